"""Split-file models: which encoders and VAE go with a family's diffusion model, and their loader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from families.recognise import model_family, name_has
from families.registry import FamilyFileError, parse_registry, registry
from families.split import SplitMismatch, SplitModel, check_encoder_count, clip_loader, find_split_model, split_shape

NODES = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "comfy" / "object_info_family_nodes.json")
                   .read_text(encoding="utf-8"))  # ComfyUI 0.3.64's definitions of the loaders
FLUX, SD3 = registry().get("flux"), registry().get("sd3")
VAES = ["ae.safetensors", "sdxl_vae.safetensors", "vae-ft-mse-840000-ema-pruned.safetensors", "pixel_space"]


@pytest.mark.parametrize(("name", "hint", "expected"), [
    ("clip_l.safetensors", "clip_l", True),
    ("sd3/clip_l_fp16.safetensors", "clip_l", True),
    ("clip_g.safetensors", "clip_l", False),
    ("t5xxl_fp8_e4m3fn_scaled.safetensors", "t5xxl", True),
    ("ae.safetensors", "ae", True),
    ("sdxl_vae.safetensors", "ae", False),  # "ae" is a piece of the name, not a substring
    ("sd3.5_vae.safetensors", "sd3", True),
])
def test_a_name_hint_matches_whole_name_pieces(name: str, hint: str, expected: bool) -> None:
    assert name_has(name, hint) is expected


def test_a_diffusion_model_family_is_not_guessed() -> None:
    assert model_family("flux1-dev.safetensors") == "flux"
    assert model_family("sd3.5_large.safetensors") == "sd3"
    assert model_family("mystery_model.safetensors") is None
    assert model_family("mystery.safetensors", {"modelspec.architecture": "flux-1-dev"}) == "flux"


def test_the_one_fitting_flux_set_is_found() -> None:
    model = find_split_model(FLUX, "flux1-dev.safetensors",
                             ["t5xxl_fp16.safetensors", "clip_l.safetensors", "clip_g.safetensors"], VAES)
    assert model == SplitModel("flux1-dev.safetensors", ("clip_l.safetensors", "t5xxl_fp16.safetensors"),
                               "ae.safetensors")
    assert model.files == ("flux1-dev.safetensors", "clip_l.safetensors", "t5xxl_fp16.safetensors", "ae.safetensors")


def test_sd3_takes_its_preferred_set_and_falls_back_to_the_next() -> None:
    encoders = ["clip_g.safetensors", "clip_l.safetensors", "t5xxl_fp16.safetensors"]
    vaes = ["sd3_vae.safetensors"]
    assert find_split_model(SD3, "sd3.5_large.safetensors", encoders, vaes).text_encoders == (
        "clip_l.safetensors", "clip_g.safetensors", "t5xxl_fp16.safetensors")
    assert find_split_model(SD3, "sd3.5_large.safetensors", encoders[:2], vaes).text_encoders == (
        "clip_l.safetensors", "clip_g.safetensors")


@pytest.mark.parametrize(("encoders", "vaes", "reason"), [
    (["clip_l.safetensors", "t5xxl_fp16.safetensors", "t5xxl_fp8_e4m3fn.safetensors"], ["ae.safetensors"],
     "several text encoders fit: t5xxl (t5xxl_fp16.safetensors, t5xxl_fp8_e4m3fn.safetensors)"),
    (["clip_l.safetensors"], ["ae.safetensors"], "the servers have no clip_l + t5xxl text encoders"),
    (["clip_l.safetensors", "t5xxl_fp16.safetensors"], ["sdxl_vae.safetensors"],
     "the servers have no VAE named like ae or flux"),
    (["clip_l.safetensors", "t5xxl_fp16.safetensors"], ["ae.safetensors", "flux_vae.safetensors"],
     "several VAEs fit (ae.safetensors, flux_vae.safetensors)"),
])
def test_no_or_several_fitting_files_say_why(encoders: list[str], vaes: list[str], reason: str) -> None:
    with pytest.raises(SplitMismatch) as raised:
        find_split_model(FLUX, "flux1-dev.safetensors", encoders, vaes)
    assert str(raised.value) == reason


@pytest.mark.parametrize(("family", "count", "loader", "clip_type"), [
    ("flux", 2, "DualCLIPLoader", "flux"),
    ("sd3", 3, "TripleCLIPLoader", None),
    ("sd3", 2, "DualCLIPLoader", "sd3"),
    ("sd3", 1, "CLIPLoader", "sd3"),
])
def test_the_clip_loader_for_a_count_and_its_type(family: str, count: int, loader: str, clip_type: str | None) -> None:
    assert clip_loader(split_shape(registry().get(family)), count) == (loader, clip_type)


def test_every_family_loader_and_type_is_one_a_real_server_has() -> None:
    for family in registry().families.values():
        if family.split is None:
            continue
        for count in family.split.encoder_counts():
            loader, clip_type = clip_loader(family.split, count)
            required = NODES[loader]["input"]["required"]
            assert (clip_type is None) == ("type" not in required), (family.name, loader)
            assert clip_type is None or clip_type in required["type"][0], (family.name, loader, clip_type)


def test_encoder_counts_and_families_without_split_models() -> None:
    check_encoder_count(FLUX, 2)
    with pytest.raises(SplitMismatch, match="a flux model takes 2 text encoder"):
        check_encoder_count(FLUX, 3)
    with pytest.raises(SplitMismatch, match="the sd15 family has no split-file models"):
        check_encoder_count(registry().get("sd15"), 1)


def test_a_split_table_with_four_encoders_is_a_family_file_error() -> None:
    raw = {"x": {"label": "X", "lora_families": ["x"], "sides": {t: 512 for t in ("draft", "standard", "quality")},
                 "tiers": {t: {"steps": 4, "cfg": 1.0, "sampler": "euler", "scheduler": "simple"}
                           for t in ("draft", "standard", "quality")},
                 "split": {"clip_type": "flux", "text_encoders": [["a", "b", "c", "d"]], "vae": ["ae"]}}}
    with pytest.raises(FamilyFileError, match=r"\[x\] split.text_encoders.0"):
        parse_registry(raw)
