"""Queue, interrupt, free, history limits, client prompt ids, uploads, LoadImage and /view."""

from __future__ import annotations

import io
from pathlib import Path
from typing import AsyncIterator

import httpx
import pytest
from PIL import Image

from comfy.simulator import SimulatedComfy
from tests.comfy.sim_fixtures import (SLOW_STEPS, WsRecorder, assert_same_shape, emptyimage_prompt,  # noqa: F401
                                      fixture, http, sim, start_sim, submit, txt2img_prompt)

QUEUE_STEPS = {step["step"]: step for step in fixture("queue_interrupt_free.json")["steps"]}


@pytest.fixture
async def slow(tmp_path: Path) -> AsyncIterator[SimulatedComfy]:
    """Sampler steps take real (simulated) time, so prompts are still running when we act."""
    server = await start_sim(tmp_path, time_model=SLOW_STEPS)
    yield server
    await server.stop()


async def test_queue_delete_clear_and_targeted_interrupt(slow: SimulatedComfy) -> None:
    captured_ws = fixture("ws_sequence_interrupt.json")
    async with httpx.AsyncClient(base_url=slow.url) as http, WsRecorder(slow.url, "q") as ws:
        await ws.wait_type("status")
        ids = [await submit(http, txt2img_prompt(seed=5000 + i, steps=10000), "q") for i in range(3)]
        await ws.wait_type("progress", ids[0], value=1)
        busy = await http.get("/queue")
        assert_same_shape(busy.json(), QUEUE_STEPS["GET /queue while running (1 running, 2 pending)"]["json"])
        assert [item[1] for item in busy.json()["queue_pending"]] == ids[1:]
        assert (await http.get("/prompt")).json() == {"exec_info": {"queue_remaining": 3}}

        deleted = await http.post("/queue", json={"delete": [ids[2]]})
        assert (deleted.status_code, deleted.content, deleted.headers.get("content-type")) == (200, b"", None)
        assert [item[1] for item in (await http.get("/queue")).json()["queue_pending"]] == [ids[1]]
        await http.post("/queue", json={"clear": True})
        after_clear = (await http.get("/queue")).json()
        assert after_clear["queue_pending"] == [] and after_clear["queue_running"][0][1] == ids[0]

        not_running = await http.post("/interrupt", json={"prompt_id": ids[1]})
        assert not_running.status_code == 200 and slow.queue.running is not None
        await http.post("/interrupt", json={"prompt_id": ids[0]})
        await ws.wait_done(ids[0])
        interrupted = await ws.wait_type("execution_interrupted", ids[0])
    assert_same_shape(interrupted, next(m["json"] for m in captured_ws["messages"]
                                        if m.get("json", {}).get("type") == "execution_interrupted"))
    assert interrupted["data"]["node_id"] == "6" and interrupted["data"]["node_type"] == "KSampler"
    tail = [m for m in ws.json() if m["type"] not in ("progress", "progress_state")][-3:]
    assert [m["type"] for m in tail] == ["execution_interrupted", "status", "executing"]
    async with httpx.AsyncClient(base_url=slow.url) as http:
        history = (await http.get(f"/history/{ids[0]}")).json()
        captured = QUEUE_STEPS["GET /history/<interrupted prompt>"]["json"]
        assert_same_shape(history[ids[0]], next(iter(captured.values())))
        assert history[ids[0]]["status"]["status_str"] == "error"
        assert (await http.get(f"/history/{ids[1]}")).json() == {}


async def test_global_interrupt_stops_the_running_prompt(slow: SimulatedComfy) -> None:
    async with httpx.AsyncClient(base_url=slow.url) as http, WsRecorder(slow.url, "g") as ws:
        prompt_id = await submit(http, txt2img_prompt(steps=10000), "g")
        await ws.wait_type("progress", prompt_id, value=1)
        response = await http.post("/interrupt")
        assert (response.status_code, response.content) == (200, b"")
        await ws.wait_type("execution_interrupted", prompt_id)


async def test_idle_interrupt_and_free_answer_empty_200(http: httpx.AsyncClient, sim: SimulatedComfy) -> None:
    for step in ("POST /interrupt with no body while idle (global)", "POST /free {unload_models, free_memory}",
                 "POST /free {} "):
        request = QUEUE_STEPS[step]["request"]
        response = await http.post(request["path"], json=request["json_body"]) if "json_body" in request \
            else await http.post(request["path"])
        assert (response.status_code, response.content, response.headers.get("content-type")) == (200, b"", None)


async def test_free_unloads_the_checkpoint(http: httpx.AsyncClient, sim: SimulatedComfy) -> None:
    async with WsRecorder(sim.url, "f") as ws:
        await ws.wait_done(await submit(http, txt2img_prompt(), "f"))
    assert sim.loaded_checkpoint == "dreamshaper_8.safetensors"
    await http.post("/free", json={"unload_models": True, "free_memory": True})
    assert sim.loaded_checkpoint is None


async def test_history_max_items_returns_newest(http: httpx.AsyncClient, sim: SimulatedComfy) -> None:
    async with WsRecorder(sim.url, "h") as ws:
        ids = [await submit(http, emptyimage_prompt(color=c), "h") for c in (1, 2, 3)]
        await ws.wait_done(ids[-1])
    assert list((await http.get("/history", params={"max_items": 1})).json()) == [ids[-1]]
    assert list((await http.get("/history")).json()) == ids
    await http.post("/history", json={"delete": [ids[0]]})
    assert list((await http.get("/history")).json()) == ids[1:]


async def test_client_prompt_id_front_and_extra_data(http: httpx.AsyncClient, sim: SimulatedComfy) -> None:
    cases = fixture("misc_prompt_id_upload.json")
    first = cases["post_prompt_with_client_prompt_id_and_front"]
    response = await http.post("/prompt", json=first["request"]["json_body"])
    assert response.json() == first["json"]
    again = cases["post_prompt_reusing_same_prompt_id"]
    async with WsRecorder(sim.url, "x") as ws:
        assert (await http.post("/prompt", json=again["request"]["json_body"])).json() == again["json"]
        # re-checked on every broadcast status; the last one follows the reused id's second run
        await ws.wait_for(lambda m: sim.history.one("my-own-id-0001").get("my-own-id-0001", {}).get("prompt", [0])[0] == 1)
    history = (await http.get("/history/my-own-id-0001")).json()
    assert_same_shape(history, cases["history_after_reuse"]["json"])
    assert history["my-own-id-0001"]["prompt"][0] == 1 and history["my-own-id-0001"]["prompt"][3] == {}


async def test_saved_png_has_comfyui_text_chunks(http: httpx.AsyncClient, sim: SimulatedComfy) -> None:
    body = fixture("misc_prompt_id_upload.json")["post_prompt_with_client_prompt_id_and_front"]["request"]["json_body"]
    expected = fixture("misc_prompt_id_upload.json")["saved_png_text_chunks"]
    async with WsRecorder(sim.url, "x") as ws:
        await http.post("/prompt", json=body)
        executed = await ws.wait_type("executed", "my-own-id-0001")
    image = executed["data"]["output"]["images"][0]
    png = await http.get("/view", params=image)
    assert Image.open(io.BytesIO(png.content)).text == expected


def png_bytes(color: str = "red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 24), color).save(buffer, format="PNG")
    return buffer.getvalue()


async def test_upload_then_load_image(http: httpx.AsyncClient, sim: SimulatedComfy) -> None:
    cases = fixture("misc_prompt_id_upload.json")
    plain = await http.post("/upload/image", files={"image": ("init.png", png_bytes())})
    assert plain.json() == cases["upload_image_plain"]["json"]
    again = await http.post("/upload/image", files={"image": ("init.png", png_bytes())})
    assert again.json() == cases["upload_image_same_name_again_no_overwrite"]["json"]
    other = await http.post("/upload/image", files={"image": ("init.png", png_bytes("blue"))})
    assert other.json()["name"] == "init (1).png"
    into_folder = await http.post("/upload/image", files={"image": ("init.png", png_bytes())},
                                  data={"overwrite": "true", "subfolder": "gradio", "type": "input"})
    assert into_folder.json() == cases["upload_image_overwrite_true_subfolder"]["json"]
    choices = (await http.get("/object_info/LoadImage")).json()["LoadImage"]["input"]["required"]["image"][0]
    assert choices == ["init (1).png", "init.png"]

    prompt = {"1": {"class_type": "LoadImage", "inputs": {"image": "gradio/init.png"}},
              "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}
    async with WsRecorder(sim.url, "u") as ws:
        prompt_id = await submit(http, prompt, "u")
        await ws.wait_done(prompt_id)
    outputs = (await http.get(f"/history/{prompt_id}")).json()[prompt_id]["outputs"]
    assert_same_shape(outputs, cases["loadimage_subfolder_to_previewimage"]["history_outputs"])
    preview = outputs["2"]["images"][0]
    assert preview["type"] == "temp" and preview["filename"].startswith("ComfyUI_temp_")
    shown = Image.open(io.BytesIO((await http.get("/view", params=preview)).content))
    assert shown.size == (40, 24) and shown.getpixel((0, 0))[:3] == (255, 0, 0)


async def test_img2img_and_upscale_nodes_run(http: httpx.AsyncClient, sim: SimulatedComfy) -> None:
    await http.post("/upload/image", files={"image": ("src.png", png_bytes())})
    prompt = txt2img_prompt(size=64, batch=1)
    prompt["20"] = {"class_type": "LoadImage", "inputs": {"image": "src.png"}}
    prompt["21"] = {"class_type": "ImageScaleBy", "inputs": {"image": ["20", 0], "upscale_method": "bilinear",
                                                              "scale_by": 2.0}}
    prompt["22"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["21", 0], "vae": ["1", 2]}}
    prompt["23"] = {"class_type": "LatentUpscaleBy", "inputs": {"samples": ["22", 0], "upscale_method": "nearest-exact",
                                                                 "scale_by": 1.5}}
    prompt["6"]["inputs"].update(latent_image=["23", 0], denoise=0.5)
    async with WsRecorder(sim.url, "i") as ws:
        prompt_id = await submit(http, prompt, "i")
        await ws.wait_done(prompt_id)
        assert "execution_success" in ws.types()
    image = (await http.get(f"/history/{prompt_id}")).json()[prompt_id]["outputs"]["8"]["images"][0]
    assert Image.open(io.BytesIO((await http.get("/view", params=image)).content)).size == (120, 72)


@pytest.mark.parametrize("index", range(len(fixture("view_image.json"))))
async def test_view_cases(http: httpx.AsyncClient, sim: SimulatedComfy, index: int) -> None:
    async with WsRecorder(sim.url, "v") as ws:
        await ws.wait_done(await submit(http, emptyimage_prompt(), "v"))
    case = fixture("view_image.json")[index]
    response = await http.get(case["request"]["path"])
    assert response.status_code == case["status"]
    assert response.headers.get("content-type") == case["content_type"]
    assert (response.content == b"") == (case["content_length"] == 0)


async def test_view_refuses_subfolder_escape(http: httpx.AsyncClient) -> None:
    response = await http.get("/view", params={"filename": "x.png", "subfolder": "../..", "type": "output"})
    assert response.status_code == 403
    assert (await http.get("/view", params={"filename": "x.png", "type": "nosuchtype"})).status_code == 400
