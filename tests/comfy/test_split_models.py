"""Split-file models in the ComfyUI layer: their graphs, the simulator's verdict on them (the real
node definitions), the inventory that lists their files, and where the pool runs them."""

from __future__ import annotations

import contextlib
import io
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from comfy.errors import ComfyValidationError, parse_node_errors
from comfy.models import GenerationSpec, ImageResult, LoraSpec, PoolJob, RefineSource
from comfy.pool import ServerPool
from comfy.protocol import parse_inventory
from comfy.scheduler import Scheduler, ServerSlot
from comfy.simulator.inventory import inventory_from_dict
from comfy.simulator.nodedefs import NodeCatalog
from comfy.simulator.validation import validate_prompt
from comfy.workflow import build_workflow
from families.split import SplitModel
from tests.comfy.sim_fixtures import fixture, start_sim

FLUX = SplitModel("flux1-dev.safetensors", ("clip_l.safetensors", "t5xxl_fp16.safetensors"), "ae.safetensors")
SD3_TRIPLE = SplitModel("sd3.5_large.safetensors", ("clip_l.safetensors", "clip_g.safetensors",
                                                     "t5xxl_fp16.safetensors"), "sd3_vae.safetensors")
INVENTORY = inventory_from_dict({
    "diffusion_models": [{"name": FLUX.diffusion, "family": "flux"}, {"name": SD3_TRIPLE.diffusion, "family": "sd3"}],
    "text_encoders": [{"name": n} for n in ("clip_l.safetensors", "clip_g.safetensors", "t5xxl_fp16.safetensors")],
    "vae": [{"name": "ae.safetensors"}, {"name": "sd3_vae.safetensors"}],
    "loras": [{"name": "flux_style.safetensors", "family": "flux"}]})
INIT_IMAGE = "draft.png"
NODES = fixture("object_info_family_nodes.json")


def spec(split: SplitModel = FLUX, family: str = "flux", **changes: Any) -> GenerationSpec:
    base = GenerationSpec(checkpoint="my-flux", positive="a lighthouse", negative="blurry", seed=3, width=512,
                          height=512, steps=4, cfg=1.0, sampler_name="euler", scheduler="simple", family=family,
                          split=split)
    return replace(base, **changes)


def nodes(workflow: dict[str, Any], class_type: str) -> list[tuple[str, dict[str, Any]]]:
    return [(node_id, node) for node_id, node in workflow.items() if node["class_type"] == class_type]


def validate(workflow: dict[str, Any]):
    return validate_prompt(workflow, NodeCatalog(INVENTORY, [INIT_IMAGE]), lambda name: name == INIT_IMAGE)


def test_a_flux_split_graph_loads_the_three_files_with_the_real_input_names() -> None:
    workflow = build_workflow(spec(loras=(LoraSpec("flux_style.safetensors", 0.7),)))
    [(unet_id, unet)] = nodes(workflow, "UNETLoader")
    [(clip_id, clip)] = nodes(workflow, "DualCLIPLoader")
    [(vae_id, vae)] = nodes(workflow, "VAELoader")
    assert not nodes(workflow, "CheckpointLoaderSimple")
    assert unet["inputs"] == {"unet_name": "flux1-dev.safetensors", "weight_dtype": "default"}
    assert clip["inputs"] == {"clip_name1": "clip_l.safetensors", "clip_name2": "t5xxl_fp16.safetensors", "type": "flux"}
    assert vae["inputs"] == {"vae_name": "ae.safetensors"}
    for class_type, node in (("UNETLoader", unet), ("DualCLIPLoader", clip), ("VAELoader", vae)):
        assert set(node["inputs"]) == set(NODES[class_type]["input"]["required"])
    [(lora_id, lora)] = nodes(workflow, "LoraLoader")  # a LoRA patches the diffusion model and the encoders
    assert (lora["inputs"]["model"], lora["inputs"]["clip"]) == ([unet_id, 0], [clip_id, 0])
    [(_, sampler)] = nodes(workflow, "KSampler")
    assert sampler["inputs"]["model"] == [lora_id, 0] and sampler["inputs"]["cfg"] == 1.0
    [(_, decode)] = nodes(workflow, "VAEDecode")
    assert decode["inputs"]["vae"] == [vae_id, 0]
    assert nodes(workflow, "FluxGuidance") and nodes(workflow, "ConditioningZeroOut") and nodes(workflow,
                                                                                                 "EmptySD3LatentImage")


@pytest.mark.parametrize(("encoders", "loader", "inputs"), [
    (SD3_TRIPLE.text_encoders, "TripleCLIPLoader", {"clip_name1": "clip_l.safetensors", "clip_name2": "clip_g.safetensors",
                                                    "clip_name3": "t5xxl_fp16.safetensors"}),
    (SD3_TRIPLE.text_encoders[:2], "DualCLIPLoader", {"clip_name1": "clip_l.safetensors",
                                                      "clip_name2": "clip_g.safetensors", "type": "sd3"}),
    (("t5xxl_fp16.safetensors",), "CLIPLoader", {"clip_name": "t5xxl_fp16.safetensors", "type": "sd3"}),
])
def test_sd3_picks_the_clip_loader_by_encoder_count(encoders: tuple[str, ...], loader: str, inputs: dict) -> None:
    workflow = build_workflow(spec(replace(SD3_TRIPLE, text_encoders=encoders), "sd3", cfg=4.5))
    [(_, clip)] = nodes(workflow, loader)
    assert clip["inputs"] == inputs
    assert nodes(workflow, "ModelSamplingSD3") and validate(workflow).ok


@pytest.mark.parametrize("kind", ["txt2img", "img2img", "hires"])
def test_every_split_graph_is_accepted_by_the_real_definitions(kind: str) -> None:
    refine = RefineSource(b"png", 0.55) if kind != "txt2img" else None
    flux = spec(refine_from=refine, hires_scale=1.25 if kind == "hires" else None, batch_size=2)
    result = validate(build_workflow(flux, init_image_name=INIT_IMAGE if refine else None))
    assert result.ok, (result.error, result.node_errors)


def test_a_fp8_weight_dtype_is_passed_and_accepted() -> None:
    workflow = build_workflow(spec(replace(FLUX, weight_dtype="fp8_e4m3fn")))
    assert nodes(workflow, "UNETLoader")[0][1]["inputs"]["weight_dtype"] == "fp8_e4m3fn"
    assert validate(workflow).ok


def errors_of(workflow: dict[str, Any]) -> list[tuple[str, str, str]]:
    result = validate(workflow)
    assert not result.ok
    return [(entry["class_type"], e["type"], e["extra_info"].get("input_name", ""))
            for entry in result.node_errors.values() for e in entry["errors"]]


def test_what_a_real_server_refuses_the_simulator_refuses() -> None:
    workflow = build_workflow(spec())
    [(clip_id, _)] = nodes(workflow, "DualCLIPLoader")
    single = {**workflow, clip_id: {"class_type": "CLIPLoader", "inputs": {"clip_name": "t5xxl_fp16.safetensors",
                                                                          "type": "flux"}}}
    assert errors_of(single) == [("CLIPLoader", "value_not_in_list", "type")]  # 0.3.64's CLIPLoader has no flux type
    missing = {**workflow, clip_id: {**workflow[clip_id], "inputs": {"clip_name1": "clip_l.safetensors",
                                                                     "type": "flux"}}}
    assert errors_of(missing) == [("DualCLIPLoader", "required_input_missing", "clip_name2")]
    assert errors_of(build_workflow(spec(replace(FLUX, weight_dtype="fp16")))) == [
        ("UNETLoader", "value_not_in_list", "weight_dtype")]


def test_a_file_the_server_lacks_is_a_missing_model_the_pool_retries_elsewhere() -> None:
    result = validate(build_workflow(spec(replace(FLUX, vae="flux_vae.safetensors", diffusion="gone.safetensors"))))
    error = ComfyValidationError(parse_node_errors(result.node_errors))
    assert error.only_missing_models() and error.missing_models() == {"gone.safetensors", "flux_vae.safetensors"}


def test_the_inventory_lists_the_split_loaders_files_and_options() -> None:
    inventory = parse_inventory(NodeCatalog(INVENTORY, []).object_info())
    assert inventory.diffusion_models == ("flux1-dev.safetensors", "sd3.5_large.safetensors")
    assert inventory.text_encoders == ("clip_g.safetensors", "clip_l.safetensors", "t5xxl_fp16.safetensors")
    assert inventory.vaes == ("ae.safetensors", "sd3_vae.safetensors", "pixel_space")
    assert inventory.weight_dtypes == ("default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2")
    assert "flux" in inventory.clip_types("DualCLIPLoader") and "flux" not in inventory.clip_types("CLIPLoader")
    assert inventory.clip_types("TripleCLIPLoader") == ()
    assert set(FLUX.files) <= inventory.model_files
    assert parse_inventory(NODES).clip_types("DualCLIPLoader") == tuple(NODES["DualCLIPLoader"]["input"]["required"]
                                                                        ["type"][0])  # the real server's answer
    assert parse_inventory({}).clip_types("DualCLIPLoader") is None  # a server without the node


def test_a_split_job_runs_only_where_every_file_is_and_stays_warm_there() -> None:
    job = PoolJob("j1", spec(batch_size=2, sampler_name="euler_ancestral"))
    files = frozenset(FLUX.files)
    assert not ServerSlot("s", files - {"ae.safetensors"}).can_run(job)
    assert ServerSlot("s", files).can_run(job)
    scheduler = Scheduler([job], [ServerSlot("cold", files), ServerSlot("warm", files, loaded=("my-flux", ()))])
    # planned on the server that has the model loaded (no load to pay), by the model's name
    assert (scheduler.slots["warm"].queue, scheduler.slots["cold"].queue) == ([job], [])


async def test_the_pool_runs_a_split_job_on_the_simulator_labelled_with_the_diffusion_model(tmp_path: Path) -> None:
    server = await start_sim(tmp_path, inventory=INVENTORY)
    try:
        async with ServerPool([server.url], names=[server.name], health_interval=60, timeout=5) as pool:
            await pool.refresh()
            job = PoolJob("j1", spec(batch_size=2, loras=(LoraSpec("flux_style.safetensors", 0.7),)))
            async with contextlib.aclosing(pool.run([job], "b1")) as events:
                images = [event async for event in events if isinstance(event, ImageResult)]
            [status] = pool.statuses()
        assert sorted(i.batch_index for i in images) == [0, 1]
        assert all(Image.open(io.BytesIO(i.png)).size == (512, 512) for i in images)
        assert server.loaded_checkpoint == "flux1-dev.safetensors"  # what the sampler's MODEL came from
        assert status.loaded_checkpoint == "my-flux"  # the pool keys what is loaded by the model's name
    finally:
        await server.stop()
