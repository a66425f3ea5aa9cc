"""POST /prompt failures equal the captured ComfyUI bodies field by field."""

from __future__ import annotations

from pathlib import Path
from typing import Any, AsyncIterator

import httpx
import pytest

from comfy.simulator import SimulatedComfy
from tests.comfy.sim_fixtures import (assert_same_shape, captured_inventory, fixture, http, sim, start_sim,  # noqa: F401
                                      submit, txt2img_prompt)

CASES = fixture("prompt_errors.json")


@pytest.fixture
async def captured_like(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A simulator whose model lists equal those of the server that produced prompt_errors.json."""
    server = await start_sim(tmp_path, inventory=captured_inventory())
    async with httpx.AsyncClient(base_url=server.url) as client:
        yield client
    await server.stop()


def without_tracebacks(body: Any) -> Any:
    """Traceback lines name the real server's source files; everything else must be equal."""
    if isinstance(body, dict):
        return {k: "<traceback>" if k == "traceback" else without_tracebacks(v) for k, v in body.items()}
    if isinstance(body, list):
        return [without_tracebacks(v) for v in body]
    return body


async def post_case(client: httpx.AsyncClient, case: dict[str, Any]) -> httpx.Response:
    request = case["request"]
    if "json_body" in request:
        return await client.post("/prompt", json=request["json_body"])
    raw = request["raw_body"]
    return await client.post("/prompt", content=b"" if raw == "b''" else raw.encode(),
                             headers={"content-type": "application/json"})


@pytest.mark.parametrize("name", list(CASES))
async def test_error_body_equals_capture(captured_like: httpx.AsyncClient, name: str) -> None:
    case = CASES[name]
    response = await post_case(captured_like, case)
    assert response.status_code == case["status"]
    assert response.headers.get("content-type") == case["content_type"]
    if "json" in case:
        assert without_tracebacks(response.json()) == without_tracebacks(case["json"])
        assert_same_shape(response.json(), case["json"])
    else:
        assert response.text == case["text"]


async def test_dangling_link_reports_a_real_traceback(captured_like: httpx.AsyncClient) -> None:
    response = await post_case(captured_like, CASES["link_to_missing_node"])
    extra = response.json()["node_errors"]["2"]["errors"][0]["extra_info"]
    assert extra["exception_type"] == "KeyError" and all(line.startswith("  File ") for line in extra["traceback"])


async def test_missing_input_image_is_a_custom_validation_error(captured_like: httpx.AsyncClient) -> None:
    case = fixture("misc_prompt_id_upload.json")["loadimage_subfolder_to_previewimage"]["post_missing_file"]
    response = await captured_like.post("/prompt", json=case["request"]["json_body"])
    assert response.status_code == 400
    assert response.json() == case["json"]


async def test_removed_checkpoint_fails_validation(sim: SimulatedComfy, http: httpx.AsyncClient) -> None:
    await submit(http, txt2img_prompt("juggernautXL_v9.safetensors", lora=None))
    sim.remove_checkpoint("juggernautXL_v9.safetensors")
    response = await http.post("/prompt", json={"prompt": txt2img_prompt("juggernautXL_v9.safetensors", lora=None)})
    assert response.status_code == 400
    error = response.json()["node_errors"]["1"]["errors"][0]
    assert error["type"] == "value_not_in_list"
    assert "juggernautXL_v9.safetensors" not in error["extra_info"]["input_config"][0]


async def test_subfolder_lora_passes_validation(http: httpx.AsyncClient) -> None:
    response = await http.post("/prompt", json={"prompt": txt2img_prompt("realvisxlV40.safetensors",
                                                                            "xl/film_grain_xl.safetensors")})
    assert response.status_code == 200 and response.json()["node_errors"] == {}


async def test_string_number_is_converted_like_comfyui(http: httpx.AsyncClient) -> None:
    prompt = txt2img_prompt()
    prompt["5"]["inputs"]["width"] = "64"
    prompt_id = (await http.post("/prompt", json={"prompt": prompt})).json()["prompt_id"]
    queued = (await http.get("/queue")).json()
    history = (await http.get(f"/history/{prompt_id}")).json()
    stored = (history.get(prompt_id, {}).get("prompt") or
              next(item for item in queued["queue_running"] + queued["queue_pending"] if item[1] == prompt_id))
    assert stored[2]["5"]["inputs"]["width"] == 64
