"""The workflow builder: graph shapes, reproducibility, sizes and defaults."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from families.registry import registry
from comfy.models import GenerationSpec, LoraSpec, RefineSource
from comfy.workflow import (
    ASPECT_RATIOS,
    HIRES_DENOISE,
    build_workflow,
    defaults_for,
    hires_steps,
    output_size,
    size_for,
)

from .conftest import fixture

BASE = GenerationSpec(
    checkpoint="tinySD15_random.safetensors",
    positive="a photo of a cat, masterpiece",
    negative="blurry, low quality",
    seed=42,
    width=64,
    height=64,
    steps=4,
    cfg=7.0,
    batch_size=2,
    loras=(LoraSpec("tiny_sd15_test_lora.safetensors", 1.0),),
    filename_prefix="tiny_txt2img",
)


def _by_type(workflow: dict, class_type: str) -> list[dict]:
    return [node for node in workflow.values() if node["class_type"] == class_type]


def _link_targets(workflow: dict) -> set[str]:
    return {v[0] for node in workflow.values() for v in node["inputs"].values() if isinstance(v, list)}


def test_one_lora_txt2img_is_exactly_the_graph_that_ran_on_a_real_server() -> None:
    assert build_workflow(BASE) == fixture("workflow_txt2img_lora.json")


def test_lora_chain_passes_model_and_clip_through_every_loader() -> None:
    spec = GenerationSpec(**{**BASE.__dict__, "loras": (LoraSpec("a.safetensors", 0.5), LoraSpec("xl/b.safetensors", 0.8))})
    wf = build_workflow(spec)
    first, second = _by_type(wf, "LoraLoader")
    assert first["inputs"]["model"] == ["1", 0] and first["inputs"]["clip"] == ["1", 1]
    assert second["inputs"]["model"] == ["2", 0] and second["inputs"]["clip"] == ["2", 1]
    assert (second["inputs"]["lora_name"], second["inputs"]["strength_clip"]) == ("xl/b.safetensors", 0.8)
    [ksampler] = _by_type(wf, "KSampler")
    assert ksampler["inputs"]["model"] == ["3", 0]
    assert all(enc["inputs"]["clip"] == ["3", 1] for enc in _by_type(wf, "CLIPTextEncode"))
    no_lora = build_workflow(GenerationSpec(**{**BASE.__dict__, "loras": ()}))
    assert not _by_type(no_lora, "LoraLoader")
    assert _by_type(no_lora, "KSampler")[0]["inputs"]["model"] == ["1", 0]


def test_img2img_encodes_the_uploaded_image_and_repeats_it_per_batch() -> None:
    spec = GenerationSpec(**{**BASE.__dict__, "refine_from": RefineSource(b"png", denoise=0.45), "batch_size": 3})
    wf = build_workflow(spec, init_image_name="draftgrid/src.png")
    assert not _by_type(wf, "EmptyLatentImage")
    [load] = _by_type(wf, "LoadImage")
    assert load["inputs"]["image"] == "draftgrid/src.png"
    [repeat] = _by_type(wf, "RepeatLatentBatch")
    assert repeat["inputs"]["amount"] == 3
    [ksampler] = _by_type(wf, "KSampler")
    assert ksampler["inputs"]["denoise"] == 0.45
    single = build_workflow(GenerationSpec(**{**spec.__dict__, "batch_size": 1}), init_image_name="x.png")
    assert not _by_type(single, "RepeatLatentBatch")
    with pytest.raises(ValueError, match="init_image_name"):
        build_workflow(spec)


def test_hires_adds_latent_upscale_and_a_second_lower_denoise_pass() -> None:
    spec = GenerationSpec(**{**BASE.__dict__, "hires_scale": 1.5, "steps": 35, "width": 512, "height": 768})
    wf = build_workflow(spec)
    [upscale] = _by_type(wf, "LatentUpscaleBy")
    first, second = _by_type(wf, "KSampler")
    assert upscale["inputs"]["scale_by"] == 1.5
    assert second["inputs"]["latent_image"][0] in wf and wf[second["inputs"]["latent_image"][0]] is upscale
    assert (second["inputs"]["denoise"], second["inputs"]["steps"]) == (HIRES_DENOISE, hires_steps(35))
    assert second["inputs"]["seed"] == first["inputs"]["seed"] == 42
    [decode] = _by_type(wf, "VAEDecode")
    assert wf[decode["inputs"]["samples"][0]] is second
    assert output_size(spec) == (768, 1152)


def test_every_node_is_linked_and_ends_in_save_image() -> None:
    spec = GenerationSpec(**{**BASE.__dict__, "hires_scale": 1.25, "refine_from": RefineSource(b"p")})
    wf = build_workflow(spec, init_image_name="x.png")
    [save] = _by_type(wf, "SaveImage")
    assert set(wf) - _link_targets(wf) == {k for k, v in wf.items() if v is save}
    assert all(isinstance(target, str) and target in wf for target in _link_targets(wf))


@given(st.text())
def test_prompts_are_plain_string_values_that_cannot_add_nodes(text: str) -> None:
    spec = GenerationSpec(**{**BASE.__dict__, "positive": text, "negative": text + '"}, "99": {'})
    wf = build_workflow(spec)
    assert len(wf) == 8
    positive, negative = _by_type(wf, "CLIPTextEncode")
    assert positive["inputs"]["text"] == text and negative["inputs"]["text"] == text + '"}, "99": {'


def test_same_spec_same_graph() -> None:
    assert build_workflow(BASE) == build_workflow(GenerationSpec(**BASE.__dict__))


@pytest.mark.parametrize("family", registry().names)
@pytest.mark.parametrize("tier", ["draft", "standard", "quality"])
def test_sizes_keep_area_and_ratio(family: str, tier: str) -> None:
    square = size_for(family, "1:1", tier)
    assert square[0] == square[1]
    for ratio, (rw, rh) in ASPECT_RATIOS.items():
        w, h = size_for(family, ratio, tier)
        assert w % 64 == 0 and h % 64 == 0
        assert abs(w / h - rw / rh) / (rw / rh) < 0.1
        assert 0.8 < (w * h) / (square[0] * square[1]) < 1.2


def test_size_and_defaults_by_family_and_tier() -> None:
    assert size_for("sd15", "1:1", "draft") == (512, 512)
    assert size_for("sdxl", "1:1", "standard") == (1024, 1024)
    assert size_for("sd15", "1:1", "quality")[0] > size_for("sd15", "1:1", "draft")[0]
    assert size_for("sd15", "16:9", "draft")[0] > size_for("sd15", "16:9", "draft")[1]
    assert [defaults_for("sd15", t).steps for t in ("draft", "standard", "quality")] == [12, 25, 35]
    assert defaults_for("sdxl", "quality").hires_scale and not defaults_for("sdxl", "draft").hires_scale
    with pytest.raises(ValueError):
        size_for("sd15", "5:4", "draft")
    with pytest.raises(ValueError):
        defaults_for("nosuchfamily", "draft")
    with pytest.raises(ValueError):
        defaults_for("sd15", "ultra")
