"""Checkpoint pools: the default file, matching what servers have, fallback, refine, families."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from learning.pools import PoolConfigError, checkpoint_family, load_pools

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "comfy"


def captured_checkpoints() -> dict[str, str]:
    """The real server's checkpoint list, each with the family the app would detect."""
    listed = json.loads((FIXTURES / "models_checkpoints.json").read_text())["json"]
    captures = json.loads((FIXTURES / "view_metadata.json").read_text())
    metadata = {
        "epicrealismXL_pureFix.safetensors": captures["checkpoint_with_metadata"]["json"],
        "tinySD15_random.safetensors": captures["real_tiny_checkpoint"]["json"],
    }
    return {name: checkpoint_family(name, metadata.get(name)) for name in listed}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pools.toml"
    path.write_text(text, encoding="utf-8")
    return path


# --- families --------------------------------------------------------------------------------


def test_families_of_the_captured_checkpoints() -> None:
    assert captured_checkpoints() == {
        "beenyouLite_l15.safetensors": "sd15",
        "dreamshaper_8.safetensors": "sd15",
        "epicrealismXL_pureFix.safetensors": "sdxl",
        "juggernautXL_v9.safetensors": "sdxl",
        "realisticVisionV60.safetensors": "sd15",
        "realvisxlV40.safetensors": "sdxl",
        "tinySD15_random.safetensors": "sd15",
    }


@pytest.mark.parametrize(
    ("metadata", "family"),
    [
        ({"modelspec.architecture": "stable-diffusion-xl-v1-base"}, "sdxl"),
        ({"modelspec.architecture": "stable-diffusion-v1"}, "sd15"),
        ({"modelspec.architecture": "stable-diffusion-v2-768-v"}, "sd2"),
        ({"ss_base_model_version": "sdxl_base_v1-0"}, "sdxl"),
        ({"ss_base_model_version": "sd_v1"}, "sd15"),
        ({"modelspec.architecture": "stable-diffusion-3-medium"}, "sd3"),
        ({"modelspec.architecture": "flux-1-dev"}, "flux"),
        ({"modelspec.architecture": "stable-diffusion-xl-v1-base", "modelspec.title": "Pony Diffusion V6 XL"}, "pony"),
    ],
)
def test_metadata_decides_over_the_name(metadata: dict[str, str], family: str) -> None:
    assert checkpoint_family("looksLikeXL_v1.safetensors", metadata) == family


@pytest.mark.parametrize(
    ("name", "family"),
    [
        ("juggernautXL_v9.safetensors", "sdxl"),
        ("realvisxlV40.safetensors", "sdxl"),
        ("sdxl/anything.safetensors", "sdxl"),
        ("ponyDiffusionV6XL.safetensors", "pony"),
        ("illustrious_mix.safetensors", "illustrious"),
        ("noobaiXLVpred10.safetensors", "illustrious"),
        ("flux1-dev.safetensors", "flux"),
        ("sd3.5_large.safetensors", "sd3"),
        ("v2-1_768-ema-pruned-sd21.safetensors", "sd2"),
        ("dreamshaper_8.safetensors", "sd15"),
        ("mystery.ckpt", "sd15"),
    ],
)
def test_family_from_name_else_sd15(name: str, family: str) -> None:
    assert checkpoint_family(name, None) == family


# --- default file ----------------------------------------------------------------------------


def test_default_pools_file() -> None:
    config = load_pools()
    assert config.pools["sd15_draft"] == ("beenyouLite_l15", "realisticVisionV60", "dreamshaper_8")
    assert config.pools["sdxl_draft"] == (
        "epicrealismXL_pureFix", "realvisxlV40", "juggernautXL_v9",
    )
    for family in ("sd15", "sdxl"):
        for tier in ("draft", "standard", "quality"):
            assert config.pools[f"{family}_{tier}"], f"{family}_{tier} is empty"


def test_default_pools_meet_the_captured_server() -> None:
    config = load_pools()
    available = captured_checkpoints()
    assert config.pool_for("sd15", "draft", available) == [
        "beenyouLite_l15.safetensors",
        "realisticVisionV60.safetensors",
        "dreamshaper_8.safetensors",
    ]
    assert config.pool_for("sdxl", "draft", available) == [
        "epicrealismXL_pureFix.safetensors", "realvisxlV40.safetensors",
        "juggernautXL_v9.safetensors",
    ]


# --- pool_for --------------------------------------------------------------------------------


def test_bare_name_matches_a_file_in_a_subfolder(tmp_path: Path) -> None:
    config = load_pools(write(tmp_path, '[pools]\nsd15_draft = ["realisticVisionV60", "gone"]\n'))
    available = {"sd15/realisticVisionV60.safetensors": "sd15", "other.safetensors": "sd15"}
    assert config.pool_for("sd15", "draft", available) == ["sd15/realisticVisionV60.safetensors"]


def test_full_name_entries_and_pool_order(tmp_path: Path) -> None:
    text = '[pools]\nsdxl_quality = ["b.safetensors", "xl\\\\a.safetensors"]\n'
    config = load_pools(write(tmp_path, text))
    available = {"xl\\a.safetensors": "sdxl", "b.safetensors": "sdxl", "c.safetensors": "sdxl"}
    assert config.pool_for("sdxl", "quality", available) == ["b.safetensors", "xl\\a.safetensors"]


def test_an_entry_of_another_family_is_skipped(tmp_path: Path) -> None:
    config = load_pools(write(tmp_path, '[pools]\nsd15_draft = ["juggernautXL_v9", "dream"]\n'))
    available = {"juggernautXL_v9.safetensors": "sdxl", "dream.safetensors": "sd15"}
    assert config.pool_for("sd15", "draft", available) == ["dream.safetensors"]


def test_fallback_to_the_family_when_nothing_of_the_pool_is_there(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = load_pools(write(tmp_path, '[pools]\nsd15_draft = ["gone", "also_gone"]\n'))
    available = {"z.safetensors": "sd15", "a.safetensors": "sd15", "x_xl.safetensors": "sdxl"}
    with caplog.at_level(logging.INFO, logger="learning.pools"):
        assert config.pool_for("sd15", "draft", available) == ["a.safetensors", "z.safetensors"]
    assert [r.message for r in caplog.records if "falling back" in r.message]
    assert config.pool_for("sdxl", "standard", available) == ["x_xl.safetensors"]  # no pool


def test_nothing_of_the_family_gives_an_empty_pool() -> None:
    assert load_pools().pool_for("sdxl", "draft", {"dreamshaper_8.safetensors": "sd15"}) == []
    assert load_pools().pool_for("sd15", "draft", {}) == []


def test_family_override_from_the_file(tmp_path: Path) -> None:
    config = load_pools(write(tmp_path, '[checkpoint_families]\n"animagine_v31" = "sdxl"\n'))
    assert config.family_of("anime/animagine_v31.safetensors") == "sdxl"
    assert config.family_of("dreamshaper_8.safetensors") == "sd15"
    assert config.family_of("x.safetensors", {"modelspec.architecture": "stable-diffusion-xl"}) == (
        "sdxl"
    )


# --- refine ----------------------------------------------------------------------------------


def test_refine_defaults_to_the_next_tier_of_the_same_family(tmp_path: Path) -> None:
    config = load_pools(write(tmp_path, ""))
    assert config.refine_target("sd15", "draft") == ("sd15", "standard")
    assert config.refine_target("sdxl", "standard") == ("sdxl", "quality")
    assert config.refine_target("sdxl", "quality") is None  # nothing above quality, unless mapped


def test_refine_from_the_quality_tier_follows_the_file(tmp_path: Path) -> None:
    config = load_pools(write(tmp_path, '[refine]\nsd15_quality = "sdxl_quality"\n'))
    assert config.refine_target("sd15", "quality") == ("sdxl", "quality")


def test_refine_can_move_to_another_family(tmp_path: Path) -> None:
    config = load_pools(write(tmp_path, '[refine]\nsd15_draft = "sdxl_standard"\n'))
    assert config.refine_target("sd15", "draft") == ("sdxl", "standard")
    assert config.refine_target("sd15", "standard") == ("sd15", "quality")


# --- broken files ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[pools]\nsd15_draft = ["a",\n\nx = 1\n', "line 4"),
        ('# header\n[pools]\nsd15_drafy = ["a"]\n', "line 3"),
        ('[pools]\n\nsd15_draft = ["a", 3]\n', "line 3"),
        ('[refine]\nsdxl_draft = "sdxl_best"\n', "line 2"),
        ('[checkpoint_families]\nfoo = "fluxx"\n', "line 2"),
        ('[poolz]\nsd15_draft = ["a"]\n', "line 1"),
    ],
)
def test_broken_file_names_the_line(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(PoolConfigError) as raised:
        load_pools(path)
    assert expected in str(raised.value) and str(path) in str(raised.value)


def test_missing_file_is_a_readable_error(tmp_path: Path) -> None:
    with pytest.raises(PoolConfigError, match="cannot read"):
        load_pools(tmp_path / "nope.toml")


# --- split-file models -----------------------------------------------------------------------

SPLIT = '''# my models
[split_models."flux1-dev"]
diffusion = "flux1-dev.safetensors"
text_encoders = ["clip_l.safetensors", "t5xxl_fp8_e4m3fn.safetensors"]
vae = "ae.safetensors"
weight_dtype = "fp8_e4m3fn"

[split_models.mystery]
diffusion = "mystery.safetensors"
text_encoders = ["a.safetensors"]
vae = "b.safetensors"
family = "sd3"
'''


def test_split_models_are_read_with_their_files_family_and_dtype(tmp_path: Path) -> None:
    config = load_pools(write(tmp_path, SPLIT))
    flux, mystery = config.split_models["flux1-dev"], config.split_models["mystery"]
    assert flux.model.files == ("flux1-dev.safetensors", "clip_l.safetensors", "t5xxl_fp8_e4m3fn.safetensors",
                                "ae.safetensors")
    assert (flux.model.weight_dtype, flux.family) == ("fp8_e4m3fn", None)  # its family: from its name, later
    assert (mystery.model.weight_dtype, mystery.family) == ("default", "sd3")


@pytest.mark.parametrize(("change", "expected"), [
    (('"t5xxl_fp8_e4m3fn.safetensors"]', ']'), "line 2, [split_models] flux1-dev: a flux model takes 2 text "
                                               "encoder(s), not 1"),
    (('family = "sd3"', 'family = "sd15"'),
     "line 8, [split_models] mystery: the sd15 family has no split-file models"),
    (('family = "sd3"', 'family = "sd4"'), "line 12, [split_models] mystery family: Input should be"),
    (('vae = "ae.safetensors"\n', ''), "line 2, [split_models] flux1-dev vae: Field required"),
    (('weight_dtype', 'dtype'), "line 6, [split_models] flux1-dev dtype: Extra inputs are not permitted"),
    (('text_encoders = ["a.safetensors"]', 'text_encoders = []'),
     "line 10, [split_models] mystery text_encoders: List should have at least 1 item"),
])
def test_a_broken_split_model_names_its_line_and_the_problem(tmp_path: Path, change: tuple[str, str],
                                                             expected: str) -> None:
    path = write(tmp_path, SPLIT.replace(*change))
    with pytest.raises(PoolConfigError) as raised:
        load_pools(path)
    assert str(raised.value).startswith(f"pools file {path}: {expected}")


def test_a_diffusion_model_family_is_the_override_else_its_name_else_unknown(tmp_path: Path) -> None:
    config = load_pools(write(tmp_path, '[checkpoint_families]\nmystery = "flux"\n'))
    assert config.diffusion_family("mystery.safetensors") == "flux"
    assert config.diffusion_family("flux1-schnell.safetensors") == "flux"
    assert config.diffusion_family("other.safetensors") is None
    assert config.family_of("other.safetensors") == "sd15"  # a checkpoint's is guessed
