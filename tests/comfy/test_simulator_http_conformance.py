"""Simple HTTP routes answer like the captured ComfyUI 0.3.64: status, content type, JSON shape."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from comfy.simulator import SimulatedComfy
from tests.comfy.sim_fixtures import FIXTURES, assert_same_shape, fixture, http, sim, strip_key  # noqa: F401

SIMPLE_CAPTURES = ["system_stats.json", "queue_idle.json", "prompt_get_idle.json", "embeddings.json", "models.json",
                   "models_loras.json", "models_checkpoints.json", "models_unknown_folder.json", "features.json",
                   "history_empty.json", "history_unknown_id.json", "object_info_unknown_node.json",
                   "experiment_models.json", "experiment_models_loras.json"]

NODES_BEYOND_THE_CAPTURE = {"RepeatLatentBatch", "LatentFromBatch"}  # from ComfyUI 0.3.64's nodes.py, see test_simulator_repeat_latent, test_pool_split
FAMILY_NODES = set(fixture("object_info_family_nodes.json"))  # the other capture, see test_families_sim


def assert_matches_capture(response: httpx.Response, captured: dict[str, Any]) -> None:
    assert response.status_code == captured["status"]
    content_type = response.headers.get("content-type")
    assert content_type == captured["content_type"]
    if "json" in captured:
        assert_same_shape(response.json(), captured["json"])
    else:
        assert response.content == captured["text"].encode()


@pytest.mark.parametrize("name", SIMPLE_CAPTURES)
@pytest.mark.parametrize("prefix", ["", "/api"])
async def test_route_matches_capture(http: httpx.AsyncClient, name: str, prefix: str) -> None:
    captured = fixture(name)
    response = await http.get(prefix + captured["request"]["path"])
    assert_matches_capture(response, captured)


async def test_models_list_the_inventory(http: httpx.AsyncClient, sim: SimulatedComfy) -> None:
    assert (await http.get("/models/checkpoints")).json() == sorted(sim.inventory.checkpoints)
    loras = (await http.get("/models/loras")).json()
    assert "xl/film_grain_xl.safetensors" in loras and loras == sorted(loras)


async def test_system_stats_names_the_simulated_device(http: httpx.AsyncClient) -> None:
    device = (await http.get("/system_stats")).json()["devices"][0]
    assert device["name"] == "cuda:0 Simulated GPU 0 (DraftGrid simulator)"
    assert 0 < device["vram_free"] <= device["vram_total"]


async def test_object_info_has_the_captured_nodes_and_shapes(http: httpx.AsyncClient) -> None:
    captured = fixture("object_info_txt2img_nodes.json")
    del captured["_capture"]
    response = await http.get("/object_info")
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    actual = strip_key(response.json(), "tooltip")  # the capture stripped tooltips
    assert set(actual) == set(captured) | NODES_BEYOND_THE_CAPTURE | FAMILY_NODES
    for node, definition in captured.items():
        assert_same_shape(actual[node], definition)
        assert actual[node]["input_order"] == definition["input_order"]
        assert actual[node]["output"] == definition["output"]


async def test_object_info_combos_come_from_the_inventory(http: httpx.AsyncClient, sim: SimulatedComfy) -> None:
    info = (await http.get("/object_info")).json()
    assert info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] == sorted(sim.inventory.checkpoints)
    lora_names = info["LoraLoader"]["input"]["required"]["lora_name"][0]
    assert lora_names == sorted(sim.inventory.loras) and "xl/film_grain_xl.safetensors" in lora_names
    assert "euler" in info["KSampler"]["input"]["required"]["sampler_name"][0]


async def test_object_info_single_node(http: httpx.AsyncClient) -> None:
    captured = fixture("object_info_LoraLoader.json")
    response = await http.get(captured["request"]["path"])
    assert response.status_code == captured["status"]
    assert_same_shape(strip_key(response.json(), "tooltip"), captured["json"])


@pytest.mark.parametrize("case", list(fixture("view_metadata.json")))
async def test_view_metadata_cases(http: httpx.AsyncClient, case: str) -> None:
    captured = fixture("view_metadata.json")[case]
    path = captured["request"]["path"]
    # our inventory stands in for the captured server's files
    path = path.replace("detailed_hair", "add_detail").replace("xl/detail_tweaker_xl", "xl/film_grain_xl")
    path = path.replace("tiny_sd15_test_lora", "anime_style_v2").replace("tinySD15_random", "dreamshaper_8")
    path = path.replace("juggernautXL_v9.safetensors", "missing.safetensors")
    response = await http.get(path)
    assert (response.status_code, response.headers.get("content-type")) == (captured["status"], captured["content_type"])
    assert (response.content == b"") == (captured["status"] != 200)
    if response.status_code == 200:  # keys differ per file; values are strings, as in every capture
        metadata = response.json()
        assert metadata and all(isinstance(v, str) for v in metadata.values())


async def test_lora_metadata_is_kohya_like(http: httpx.AsyncClient) -> None:
    anime = (await http.get("/view_metadata/loras", params={"filename": "anime_style_v2.safetensors"})).json()
    assert anime["ss_base_model_version"] == "sd_v1"
    assert json.loads(anime["ss_tag_frequency"])["10_anime"]["anime"] == 120
    neon = (await http.get("/view_metadata/loras", params={"filename": "cyberpunk_neon_xl.safetensors"})).json()
    assert neon["modelspec.architecture"] == "stable-diffusion-xl-v1-base/lora"
    assert neon["modelspec.trigger_phrase"] == "cyberpunk neon"
    checkpoint = (await http.get("/view_metadata/checkpoints", params={"filename": "realvisxlV40.safetensors"})).json()
    assert checkpoint["modelspec.architecture"] == "stable-diffusion-xl-v1-base"


@pytest.mark.parametrize("prefix", ["", "/api"])
async def test_checkpoint_metadata_is_the_captured_answer(http: httpx.AsyncClient, prefix: str) -> None:
    """The default inventory holds the captured server's metadata-bearing checkpoint, byte for byte."""
    captured = fixture("view_metadata.json")["checkpoint_with_metadata"]
    response = await http.get(prefix + captured["request"]["path"])
    assert response.headers["content-type"] == captured["content_type"]
    assert response.json() == captured["json"]
    assert len(response.content) == captured["content_length"]
    assert response.json()["modelspec.architecture"] == "stable-diffusion-xl-v1-base"  # the app's family source


async def test_every_captured_route_we_serve_is_mirrored_under_api(http: httpx.AsyncClient) -> None:
    served = ["/embeddings", "/features", "/history", "/models", "/object_info", "/prompt", "/queue",
              "/system_stats", "/experiment/models"]
    routes = (FIXTURES / "routes.txt").read_text()
    for path in served:
        assert f"GET\t{path}\t" in routes
        plain, mirrored = await http.get(path), await http.get("/api" + path)
        assert plain.status_code == mirrored.status_code == 200
        assert plain.json() == mirrored.json()
