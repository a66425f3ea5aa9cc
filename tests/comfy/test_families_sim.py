"""Every registry family's graphs are accepted by the simulator with the real node definitions.

The simulator's definitions of the family nodes are the ones captured from ComfyUI 0.3.64
(tests/fixtures/comfy/object_info_family_nodes.json); its validation is what accepts a graph.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from comfy.models import GenerationSpec, LoraSpec, RefineSource
from comfy.simulator import load_inventory
from comfy.simulator.inventory import inventory_from_dict
from comfy.simulator.nodedefs import NodeCatalog, _static_defs
from comfy.simulator.validation import validate_prompt
from comfy.workflow import build_workflow, defaults_for, size_for
from families.recognise import checkpoint_family
from families.registry import registry
from tests.comfy.sim_fixtures import fixture, start_sim, submit

INVENTORY = load_inventory()
# the live combo lists a real server fills from its folders (left empty in the definitions)
LIVE_LISTS = {"UNETLoader": ["unet_name"], "CLIPLoader": ["clip_name"], "DualCLIPLoader": ["clip_name1", "clip_name2"],
              "TripleCLIPLoader": ["clip_name1", "clip_name2", "clip_name3"], "VAELoader": ["vae_name"],
              "LoraLoaderModelOnly": ["lora_name"], "LoadImage": ["image"]}
INIT_IMAGE = "draft.png"


def checkpoint_of(family: str) -> str:
    return next(f.name for f in INVENTORY.checkpoints.values() if f.family == family)


def lora_of(family: str) -> str | None:
    fits = registry().get(family).lora_families
    return next((f.name for f in INVENTORY.loras.values() if f.family in fits), None)


def spec_for(family: str, tier: str, *, refine: bool = False, batch_size: int = 2) -> GenerationSpec:
    settings = defaults_for(family, tier)
    width, height = size_for(family, "3:2", tier)
    lora = lora_of(family)
    return GenerationSpec(
        checkpoint=checkpoint_of(family), positive="a lighthouse at dusk", negative="blurry", seed=7,
        width=width, height=height, steps=settings.steps, cfg=settings.cfg, sampler_name=settings.sampler,
        scheduler=settings.scheduler, batch_size=batch_size, loras=(LoraSpec(lora, 0.8),) if lora else (),
        hires_scale=settings.hires_scale, refine_from=RefineSource(b"png", 0.55) if refine else None, family=family)


GRAPHS = {
    "txt2img": lambda family: spec_for(family, "draft"),
    "img2img": lambda family: spec_for(family, "standard", refine=True),
    "hires": lambda family: spec_for(family, "quality", refine=True),
}


def graph(family: str, kind: str) -> dict[str, Any]:
    spec = GRAPHS[kind](family)
    return build_workflow(spec, init_image_name=INIT_IMAGE if spec.refine_from else None)


def nodes(workflow: dict[str, Any], class_type: str) -> list[dict[str, Any]]:
    return [node for node in workflow.values() if node["class_type"] == class_type]


def test_family_node_definitions_are_the_captured_ones() -> None:
    captured = fixture("object_info_family_nodes.json")
    for class_type, definition in captured.items():
        expected = {**definition, "input": {**definition["input"], "required": {
            name: ([[]] + spec[1:] if name in LIVE_LISTS.get(class_type, ()) else spec)
            for name, spec in definition["input"]["required"].items()}}}
        assert _static_defs()[class_type] == expected, class_type


def test_the_inventory_declares_a_checkpoint_of_every_family_it_recognises_as_such() -> None:
    for family in registry().names:
        entry = INVENTORY.checkpoints[checkpoint_of(family)]
        assert checkpoint_family(entry.name, entry.metadata) == family


@pytest.mark.parametrize("kind", list(GRAPHS))
@pytest.mark.parametrize("family", registry().names)
def test_every_family_graph_is_accepted_with_the_real_definitions(family: str, kind: str) -> None:
    result = validate_prompt(graph(family, kind), NodeCatalog(INVENTORY, [INIT_IMAGE]), lambda name: name == INIT_IMAGE)
    assert result.ok, (result.error, result.node_errors)


@pytest.mark.parametrize("kind", list(GRAPHS))
def test_flux_graph_guidance_cfg_one_and_no_negative_text(kind: str) -> None:
    workflow = graph("flux", kind)
    assert len(nodes(workflow, "FluxGuidance")) == 1 and nodes(workflow, "FluxGuidance")[0]["inputs"]["guidance"] == 3.5
    assert all(k["inputs"]["cfg"] == 1.0 for k in nodes(workflow, "KSampler"))
    assert [n["inputs"]["text"] for n in nodes(workflow, "CLIPTextEncode")] == ["a lighthouse at dusk"]
    [zero] = nodes(workflow, "ConditioningZeroOut")
    zero_id = next(i for i, n in workflow.items() if n is zero)
    assert all(k["inputs"]["negative"] == [zero_id, 0] for k in nodes(workflow, "KSampler"))
    guidance_id = next(i for i, n in workflow.items() if n["class_type"] == "FluxGuidance")
    assert all(k["inputs"]["positive"] == [guidance_id, 0] for k in nodes(workflow, "KSampler"))
    assert nodes(workflow, "CheckpointLoaderSimple")
    if kind == "txt2img":
        assert nodes(workflow, "EmptySD3LatentImage") and not nodes(workflow, "EmptyLatentImage")


@pytest.mark.parametrize("kind", list(GRAPHS))
def test_sd3_graph_model_sampling_sd3_latent_and_its_defaults(kind: str) -> None:
    workflow = graph("sd3", kind)
    [sampling] = nodes(workflow, "ModelSamplingSD3")
    sampling_id = next(i for i, n in workflow.items() if n is sampling)
    assert sampling["inputs"]["shift"] == 3.0
    assert all(k["inputs"]["model"] == [sampling_id, 0] and k["inputs"]["scheduler"] == "sgm_uniform"
               and k["inputs"]["cfg"] == 4.5 for k in nodes(workflow, "KSampler"))
    assert len(nodes(workflow, "CLIPTextEncode")) == 2 and not nodes(workflow, "FluxGuidance")
    if kind == "txt2img":
        assert nodes(workflow, "EmptySD3LatentImage")


@pytest.mark.parametrize("family", ["pony", "illustrious"])
@pytest.mark.parametrize("kind", list(GRAPHS))
def test_pony_and_illustrious_skip_two_clip_layers_for_both_prompts(family: str, kind: str) -> None:
    workflow = graph(family, kind)
    [skip] = nodes(workflow, "CLIPSetLastLayer")
    skip_id = next(i for i, n in workflow.items() if n is skip)
    assert skip["inputs"]["stop_at_clip_layer"] == -2
    assert skip["inputs"]["clip"][0] == next(i for i, n in workflow.items() if n["class_type"] == "LoraLoader")
    assert [n["inputs"]["clip"] for n in nodes(workflow, "CLIPTextEncode")] == [[skip_id, 0]] * 2
    assert nodes(workflow, "EmptyLatentImage") or kind != "txt2img"


@pytest.mark.parametrize("family", ["sd15", "sd2", "sdxl"])
@pytest.mark.parametrize("kind", list(GRAPHS))
def test_classic_families_keep_the_plain_graph(family: str, kind: str) -> None:
    workflow = graph(family, kind)
    extras = {"CLIPSetLastLayer", "ModelSamplingSD3", "FluxGuidance", "ConditioningZeroOut", "EmptySD3LatentImage"}
    assert not extras & {n["class_type"] for n in workflow.values()}
    assert [n["inputs"]["text"] for n in nodes(workflow, "CLIPTextEncode")] == ["a lighthouse at dusk", "blurry"]
    assert (len(nodes(workflow, "KSampler")) == 2) == (kind == "hires")


@pytest.mark.parametrize("family", registry().names)
async def test_every_family_renders_on_the_simulator(tmp_path: Path, family: str) -> None:
    """Submitted over HTTP: accepted, run, and a picture of the asked size comes back."""
    server = await start_sim(tmp_path)
    try:
        spec = spec_for(family, "draft", batch_size=1)
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            prompt_id = await submit(client, build_workflow(spec))
            for _ in range(200):
                history = (await client.get(f"/history/{prompt_id}")).json()
                if history:
                    break
                await asyncio.sleep(0.02)
            [output] = [o for o in history[prompt_id]["outputs"].values() if "images" in o]
            image = output["images"][0]
            png = (await client.get("/view", params={"filename": image["filename"], "subfolder": image["subfolder"],
                                                     "type": "output"})).content
        assert Image.open(io.BytesIO(png)).size == (spec.width, spec.height)
    finally:
        await server.stop()


def test_split_file_loaders_list_the_inventory_folders() -> None:
    inventory = inventory_from_dict({
        "diffusion_models": [{"name": "flux1-dev.safetensors", "family": "flux"}],
        "text_encoders": [{"name": "t5xxl_fp8.safetensors"}, {"name": "clip_l.safetensors"}],
        "vae": [{"name": "ae.safetensors"}]})
    catalog = NodeCatalog(inventory, [])
    combo = lambda node, name: catalog.node(node)["input"]["required"][name][0]  # noqa: E731
    assert combo("UNETLoader", "unet_name") == ["flux1-dev.safetensors"]
    assert combo("DualCLIPLoader", "clip_name2") == ["clip_l.safetensors", "t5xxl_fp8.safetensors"]
    assert combo("VAELoader", "vae_name") == ["ae.safetensors", "pixel_space"]
    assert inventory.model("flux1-dev.safetensors").family == "flux"
