"""ComfyClient against captured real-server answers and ws sequences (ReplayComfy)."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web

from comfy.client import ComfyClient
from comfy.errors import (
    ComfyDisconnected,
    ComfyExecutionError,
    ComfyInterrupted,
    ComfyProtocolError,
    ComfyValidationError,
)
from comfy.protocol import Preview, Progress

from .conftest import PNG, ReplayComfy, fixture, png_named, ws_script

LORA_RUNS = fixture("ws_sequence_txt2img_lora.json")["runs"]
PREVIEW_RUNS = fixture("ws_sequence_txt2img_previews.json")["runs"]
WORKFLOW = fixture("workflow_txt2img_lora.json")


def _serve_view(replay: ReplayComfy) -> None:
    async def view(request: web.Request) -> web.Response:
        return web.Response(body=png_named(request.query["filename"]), content_type="image/png")
    replay.routes[("GET", "/view")] = view


async def test_run_follows_the_captured_stream_and_fetches_images(replay: ReplayComfy) -> None:
    cold = LORA_RUNS[0]
    replay.captured_prompt_id, replay.script = cold["prompt_id"], ws_script(cold["messages"])
    _serve_view(replay)
    progress: list[Progress] = []
    async with ComfyClient(replay.url, name="real") as client:
        images = await client.run(WORKFLOW, on_progress=progress.append)
    [posted] = replay.posted
    assert posted["client_id"] == client.client_id and posted["prompt"] == WORKFLOW
    assert [(i.filename, i.batch_index, i.node_id) for i in images] == [
        ("tiny_txt2img_00001_.png", 0, "8"), ("tiny_txt2img_00002_.png", 1, "8")]
    assert images[0].data == png_named("tiny_txt2img_00001_.png")
    assert [(p.value, p.max) for p in progress] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert {p.prompt_id for p in progress} == {posted["prompt_id"]}
    assert replay.feature_flags == [{"type": "feature_flags", "data": {"supports_preview_metadata": True}}]
    assert replay.ws_extensions == [None]  # no permessage-deflate offered: previews do not deflate


@pytest.mark.parametrize("run", PREVIEW_RUNS, ids=lambda r: r["label"])
async def test_previews_of_both_frame_types_reach_the_callback(replay: ReplayComfy, run: dict) -> None:
    replay.captured_prompt_id, replay.script = run["prompt_id"], ws_script(run["messages"])
    _serve_view(replay)
    previews: list[Preview] = []
    async with ComfyClient(replay.url) as client:
        images = await client.run(WORKFLOW, on_preview=previews.append)
    assert len(images) == 2
    assert len(previews) == 4 and all(p.image.startswith(b"\xff\xd8") for p in previews)
    assert {p.mime for p in previews} == {"image/jpeg"}


async def test_execution_error_is_raised_with_node_and_message(replay: ReplayComfy) -> None:
    capture = fixture("ws_sequence_execution_error.json")
    replay.captured_prompt_id, replay.script = capture["prompt_id"], ws_script(capture["messages"])
    async with ComfyClient(replay.url) as client:
        with pytest.raises(ComfyExecutionError) as caught:
            await client.run(capture["prompt"])
    assert (caught.value.node_id, caught.value.node_type) == ("4", "CheckpointLoaderSimple")
    assert "Could not detect model type" in str(caught.value)


async def test_interrupted_run_raises_interrupted(replay: ReplayComfy) -> None:
    capture = fixture("ws_sequence_interrupt.json")
    first = capture["prompt_ids"][0]
    replay.captured_prompt_id = first
    replay.script = [m for m in ws_script(capture["messages"]) if first in json.dumps(m)]
    async with ComfyClient(replay.url) as client:
        with pytest.raises(ComfyInterrupted, match="KSampler #6"):
            await client.run(WORKFLOW)


async def test_socket_drop_mid_run_recovers_the_result_from_history(replay: ReplayComfy) -> None:
    cold = LORA_RUNS[0]
    replay.captured_prompt_id, replay.script = cold["prompt_id"], ws_script(cold["messages"])
    replay.drop_after = 10  # well before `executed`
    _serve_view(replay)
    history = fixture("history_prompt_txt2img_lora.json")["json"]
    replay.reply_json("GET", "/queue", fixture("queue_idle.json")["json"])

    def history_for(request: web.Request) -> web.Response:
        return web.json_response({request.match_info.get("tail", "").split("/")[-1]: history[cold["prompt_id"]]})
    async with ComfyClient(replay.url) as client:
        pid = "recovered-prompt"
        replay.routes[("GET", f"/history/{pid}")] = history_for
        images = await client.run(WORKFLOW, prompt_id=pid)
    assert [i.filename for i in images] == ["tiny_txt2img_00001_.png", "tiny_txt2img_00002_.png"]


async def test_socket_drop_with_prompt_lost_is_a_disconnect(replay: ReplayComfy) -> None:
    replay.captured_prompt_id, replay.script = LORA_RUNS[0]["prompt_id"], ws_script(LORA_RUNS[0]["messages"])
    replay.drop_after = 3
    replay.reply_json("GET", "/queue", fixture("queue_idle.json")["json"])
    replay.reply_json("GET", "/history/lost", {})
    async with ComfyClient(replay.url, name="gpu-x") as client:
        with pytest.raises(ComfyDisconnected, match="gpu-x: prompt lost is neither queued nor finished"):
            await client.run(WORKFLOW, prompt_id="lost")


async def test_quiet_stream_is_probed_and_waits_while_queued(replay: ReplayComfy) -> None:
    """No ws events for longer than the timeout: the client asks /queue instead of giving up."""
    cold = LORA_RUNS[0]
    replay.captured_prompt_id = cold["prompt_id"]
    script = ws_script(cold["messages"])
    probes: list[str] = []
    release = asyncio.Event()

    def queue(_request: web.Request) -> web.Response:
        probes.append("queue")
        release.set()
        return web.json_response({"queue_running": [[0, "slow", {}, {}, []]], "queue_pending": []})
    replay.routes[("GET", "/queue")] = queue
    _serve_view(replay)

    async with ComfyClient(replay.url, timeout=0.2) as client:
        async def post_later(request: web.Request) -> web.Response:
            body = await request.json()
            ws = replay.sockets[body["client_id"]]

            async def send_after_probe() -> None:
                await release.wait()
                for frame in script:
                    await ws.send_str(json.dumps(frame).replace(cold["prompt_id"], "slow"))
            asyncio.get_running_loop().create_task(send_after_probe())
            return web.json_response({"prompt_id": "slow", "number": 1, "node_errors": {}})
        replay.routes[("POST", "/prompt")] = post_later
        images = await client.run(WORKFLOW, prompt_id="slow")
    assert probes and len(images) == 2


async def test_http_endpoints_against_captures(replay: ReplayComfy) -> None:
    replay.reply_capture("GET", "/object_info/LoraLoader", fixture("object_info_LoraLoader.json"))
    replay.reply_capture("GET", "/object_info/NoSuchNode", fixture("object_info_unknown_node.json"))
    metadata = fixture("view_metadata.json")
    replay.reply_capture("GET", "/view_metadata/loras", metadata["lora_with_metadata"])
    replay.reply_capture("GET", "/view_metadata/checkpoints", metadata["checkpoint_without_metadata"])
    replay.reply_capture("GET", "/history/00000000-0000-0000-0000-000000000000", fixture("history_unknown_id.json"))
    replay.reply_capture("GET", "/system_stats", fixture("system_stats.json"))
    replay.reply_capture("GET", "/queue", fixture("queue_idle.json"))
    async with ComfyClient(replay.url) as client:
        lora_info = await client.object_info("LoraLoader")
        assert "xl/detail_tweaker_xl.safetensors" in lora_info["LoraLoader"]["input"]["required"]["lora_name"][0]
        assert await client.object_info("NoSuchNode") == {}
        meta = await client.view_metadata("anime_style_v2.safetensors")
        assert meta is not None and meta["ss_base_model_version"] == "sd_v1"
        assert json.loads(meta["ss_tag_frequency"])["10_anime"]["anime"] == 40  # raw JSON string kept
        assert await client.view_metadata("juggernautXL_v9.safetensors", folder="checkpoints") is None
        assert await client.history("00000000-0000-0000-0000-000000000000") == {}
        assert (await client.system_stats()).comfyui_version == "0.3.64"
        assert (await client.queue()).pending == ()


async def test_upload_interrupt_free_send_what_comfyui_expects(replay: ReplayComfy) -> None:
    seen: list[tuple[str, object]] = []

    async def upload(request: web.Request) -> web.Response:
        form = await request.post()
        image = form["image"]
        seen.append(("upload", (form["subfolder"], form["overwrite"], image.filename, image.file.read())))  # type: ignore[union-attr]
        return web.json_response({"name": "init.png", "subfolder": "gradio", "type": "input"})

    async def record(request: web.Request) -> web.Response:
        seen.append((request.path, await request.text()))
        return web.Response(status=200)
    replay.routes[("POST", "/upload/image")] = upload
    for path in ("/interrupt", "/free", "/queue"):
        replay.routes[("POST", path)] = record
    async with ComfyClient(replay.url) as client:
        assert await client.upload_image(PNG, "init.png", subfolder="gradio") == "gradio/init.png"
        await client.interrupt("p1")
        await client.interrupt()
        await client.free()
        await client.delete_from_queue(["p2"])
    assert seen[0] == ("upload", ("gradio", "true", "init.png", PNG))
    assert [(p, json.loads(b) if b else None) for p, b in seen[1:]] == [
        ("/interrupt", {"prompt_id": "p1"}),
        ("/interrupt", None),
        ("/free", {"unload_models": True, "free_memory": True}),
        ("/queue", {"delete": ["p2"]}),
    ]


async def test_submit_validation_error_and_malformed_answers(replay: ReplayComfy) -> None:
    replay.reply_capture("POST", "/prompt", fixture("prompt_errors.json")["ckpt_name_not_in_list"])
    replay.routes[("GET", "/system_stats")] = lambda _r: web.Response(text="{not json", content_type="application/json")
    async with ComfyClient(replay.url) as client:
        with pytest.raises(ComfyValidationError, match="ckpt_name 'not_installed_model.safetensors' not in list"):
            await client.submit(WORKFLOW)
        with pytest.raises(ComfyProtocolError, match="non-JSON"):
            await client.system_stats()


async def test_view_refuses_oversize_and_hostile_names(replay: ReplayComfy) -> None:
    replay.routes[("GET", "/view")] = lambda _r: web.Response(body=b"x" * 5000, content_type="image/png")

    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(10):
            await response.write(b"y" * 1000)
        return response
    async with ComfyClient(replay.url, max_image_bytes=4096) as client:
        with pytest.raises(ComfyProtocolError, match="over the 4096 byte limit"):
            await client.view("big.png")
        replay.routes[("GET", "/view")] = chunked  # no content-length: counted while streaming
        with pytest.raises(ComfyProtocolError, match="over the 4096 byte limit"):
            await client.view("big.png")
        with pytest.raises(ComfyProtocolError, match="hostile"):
            await client.view("../../etc/passwd")
