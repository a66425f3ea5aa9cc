"""The family registry file, and what it recognises: families, LoRA fit, accelerators."""

from __future__ import annotations

import pytest

from families.accelerators import fast_lora, recognise, steps_for
from families.recognise import checkpoint_family, lora_fits
from families.registry import FamilyFileError, parse_registry, registry

REQUIRED = ("sd15", "sd2", "sdxl", "pony", "illustrious", "sd3", "flux")


def test_the_bundled_file_has_every_required_family_with_its_graph_facts() -> None:
    families = registry()
    assert set(REQUIRED) <= set(families.names)
    assert families.get("pony").clip_skip == 2 and families.get("pony").quality_prefix.startswith("score_9")
    assert families.get("illustrious").clip_skip == 2
    assert families.get("sd3").latent == "EmptySD3LatentImage" and families.get("sd3").model_sampling_shift == 3.0
    flux = families.get("flux")
    assert (flux.guidance, flux.negative, flux.latent) == (3.5, False, "EmptySD3LatentImage")
    assert {flux.tier(t).cfg for t in ("draft", "standard", "quality")} == {1.0}


@pytest.mark.parametrize("family", ["pony", "illustrious", "sdxl"])
def test_sdxl_loras_fit_every_sdxl_family(family: str) -> None:
    assert lora_fits(family, "sdxl") and not lora_fits(family, "sd15")


def test_sd15_loras_fit_only_sd15() -> None:
    assert lora_fits("sd15", "sd15") and not lora_fits("sd15", "sdxl") and not lora_fits("flux", "sd15")


def test_an_unknown_architecture_is_kept_as_its_own_family() -> None:
    assert checkpoint_family("x.safetensors", {"modelspec.architecture": "hunyuan-dit-v1"}) == "hunyuan-dit-v1"


@pytest.mark.parametrize(("name", "metadata", "family", "kind", "expected", "steps"), [
    ("sdxl_lightning_4step_lora.safetensors", None, "sdxl", "lora", "lightning", 4),
    ("Hyper-SDXL-8steps-lora.safetensors", None, "sdxl", "lora", "hyper-sd", 8),
    ("lcm-lora-sdv1-5.safetensors", None, "sd15", "lora", "lcm", 6),
    ("dmd2_sdxl_4step_lora.safetensors", None, "sdxl", "lora", "dmd2", 4),
    ("some_lora.safetensors", {"modelspec.title": "SDXL Lightning 2-step"}, "sdxl", "lora", "lightning", 4),
    ("sd_xl_turbo_1.0_fp16.safetensors", None, "sdxl", "checkpoint", "turbo", 6),
    ("flux1-schnell-fp8.safetensors", None, "flux", "checkpoint", "schnell", 4),
])
def test_accelerators_are_recognised_by_name_and_metadata(name: str, metadata: dict | None, family: str, kind: str,
                                                          expected: str, steps: int) -> None:
    accelerator = recognise(name, metadata, family, kind)
    assert accelerator is not None and accelerator.name == expected
    assert steps_for(accelerator, name) == steps


def test_style_loras_are_no_accelerators() -> None:
    assert recognise("cyberpunk_neon_xl.safetensors", None, "sdxl", "lora") is None
    assert recognise("flux1-dev-fp8.safetensors", None, "flux", "checkpoint") is None


def test_fast_lora_picks_only_a_fitting_one() -> None:
    lightning = recognise("sdxl_lightning_4step_lora.safetensors", None, "sdxl", "lora")
    loras = {"sdxl_lightning_4step_lora.safetensors": ("sdxl", lightning), "style.safetensors": ("sdxl", None)}
    assert fast_lora("pony", loras).file == "sdxl_lightning_4step_lora.safetensors"
    assert fast_lora("sd15", loras) is None


@pytest.mark.parametrize(("data", "message"), [
    ({"x": {"label": "X"}}, "[x] lora_families"),
    ({"x": "oops"}, "'x' is not a table"),
])
def test_a_broken_family_file_names_the_family_and_field(data: dict, message: str) -> None:
    with pytest.raises(FamilyFileError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_registry(data)


def test_a_family_naming_an_unknown_lora_family_is_refused() -> None:
    entry = {key: value for key, value in registry().get("sd15").model_dump().items() if key != "name"}
    with pytest.raises(FamilyFileError, match="unknown family 'sd9'"):
        parse_registry({"sd15": {**entry, "lora_families": ["sd9"]}})
