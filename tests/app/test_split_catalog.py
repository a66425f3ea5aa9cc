"""Which split-file models the catalog offers: discovered when the servers have one fitting set,
named in the pools file otherwise; every other case is not offered, with one log line saying why."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from comfy.models import ServerInventory
from comfy.pool import ServerPool
from comfy.simulator import SimulatedComfy
from comfy.simulator.inventory import inventory_from_dict
from draftgrid.catalog import read_catalog
from draftgrid.split_models import OfferedSplitModel, split_models
from families.split import SplitModel
from learning.pools import PoolConfig, load_pools

DUAL_TYPES = ("sdxl", "sd3", "flux", "hunyuan_video", "hidream", "hunyuan_image")  # ComfyUI 0.3.64
CLIP_TYPES = ("stable_diffusion", "sd3", "wan")
LOADERS = (("CLIPLoader", CLIP_TYPES), ("DualCLIPLoader", DUAL_TYPES), ("TripleCLIPLoader", ()))
DTYPES = ("default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2")
FLUX_FILES = ("flux1-dev.safetensors", "clip_l.safetensors", "t5xxl_fp16.safetensors", "ae.safetensors")


def server(diffusion: tuple[str, ...] = ("flux1-dev.safetensors",),
           encoders: tuple[str, ...] = ("clip_l.safetensors", "t5xxl_fp16.safetensors"),
           vaes: tuple[str, ...] = ("ae.safetensors", "pixel_space"), *, checkpoints: tuple[str, ...] = (),
           loaders: tuple = LOADERS) -> ServerInventory:
    return ServerInventory(checkpoints, (), ("euler",), ("simple",), diffusion, DTYPES, encoders, vaes, loaders)


def offered(servers: dict[str, ServerInventory], pools: PoolConfig | None = None,
            checkpoints: dict[str, str] | None = None) -> dict[str, OfferedSplitModel]:
    union = ServerInventory(
        tuple(sorted({c for s in servers.values() for c in s.checkpoints})), (), (), (),
        tuple(sorted({d for s in servers.values() for d in s.diffusion_models})), DTYPES,
        tuple(sorted({e for s in servers.values() for e in s.text_encoders})),
        tuple(sorted({v for s in servers.values() for v in s.vaes})), LOADERS)
    pools = pools or PoolConfig({}, {}, {})
    families = {name: pools.diffusion_family(name) for name in union.diffusion_models}
    return split_models(servers, union, pools, families, checkpoints or {})


def pools_naming(tmp_path: Path, body: str) -> PoolConfig:
    path = tmp_path / "pools.toml"
    path.write_text(body, encoding="utf-8")
    return load_pools(path)


def decisions(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "draftgrid.split_models"]


def test_the_one_fitting_set_is_used_without_configuration(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    assert offered({"gpu-0": server()}) == {"flux1-dev.safetensors": OfferedSplitModel("flux", SplitModel(
        "flux1-dev.safetensors", ("clip_l.safetensors", "t5xxl_fp16.safetensors"), "ae.safetensors"))}
    assert decisions(caplog) == ["split model flux1-dev.safetensors (discovered, flux): offered: flux1-dev.safetensors"
                                 " + clip_l.safetensors + t5xxl_fp16.safetensors + ae.safetensors (default)"]


def test_an_ambiguous_set_is_not_offered_and_one_line_says_why(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    encoders = ("clip_l.safetensors", "t5xxl_fp16.safetensors", "t5xxl_fp8_e4m3fn.safetensors")
    assert offered({"gpu-0": server(encoders=encoders)}) == {}
    assert decisions(caplog) == [
        "split model flux1-dev.safetensors (discovered, flux): not offered: several text encoders fit: t5xxl "
        "(t5xxl_fp16.safetensors, t5xxl_fp8_e4m3fn.safetensors); name its files in the pools file's [split_models]"]


def test_the_pools_file_names_the_set_and_the_file_is_not_discovered_again(tmp_path: Path) -> None:
    pools = pools_naming(tmp_path, '[split_models."flux-dev-fp8"]\ndiffusion = "flux1-dev.safetensors"\n'
                                   'text_encoders = ["clip_l.safetensors", "t5xxl_fp8_e4m3fn.safetensors"]\n'
                                   'vae = "ae.safetensors"\nweight_dtype = "fp8_e4m3fn"\n')
    encoders = ("clip_l.safetensors", "t5xxl_fp16.safetensors", "t5xxl_fp8_e4m3fn.safetensors")
    assert offered({"gpu-0": server(encoders=encoders)}, pools) == {"flux-dev-fp8": OfferedSplitModel("flux", SplitModel(
        "flux1-dev.safetensors", ("clip_l.safetensors", "t5xxl_fp8_e4m3fn.safetensors"), "ae.safetensors",
        "fp8_e4m3fn"))}


@pytest.mark.parametrize(("servers", "reason"), [
    ({"gpu-0": server(encoders=("clip_l.safetensors", "t5xxl_fp8.safetensors"))},
     "text encoder t5xxl_fp16.safetensors is on no online server (did you mean t5xxl_fp8.safetensors?)"),
    ({"gpu-0": server(vaes=("ae.safetensors",)), "gpu-1": server(diffusion=(), vaes=())},
     None),  # every file on gpu-0: offered
    ({"gpu-0": server(vaes=()), "gpu-1": server(diffusion=(), encoders=())},
     "no online server has all of " + ", ".join(FLUX_FILES)),
    ({"gpu-0": server(loaders=(("DualCLIPLoader", ("sdxl", "sd3")),))},
     "the servers with its files lack DualCLIPLoader type flux or weight dtype default: gpu-0"),
])
def test_a_named_model_is_offered_only_where_a_server_can_run_it(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                                 servers: dict, reason: str | None) -> None:
    pools = pools_naming(tmp_path, '[split_models.mine]\ndiffusion = "flux1-dev.safetensors"\n'
                                   'text_encoders = ["clip_l.safetensors", "t5xxl_fp16.safetensors"]\n'
                                   'vae = "ae.safetensors"\n')
    assert ("mine" in offered(servers, pools)) is (reason is None)
    if reason is not None:
        assert decisions(caplog) == [f"split model mine (pools file, flux): not offered: {reason}"]


def test_a_diffusion_model_of_no_known_family_is_not_guessed(caplog: pytest.LogCaptureFixture) -> None:
    assert offered({"gpu-0": server(diffusion=("mystery.safetensors",))}) == {}
    assert decisions(caplog) == ["split model mystery.safetensors (discovered, family unknown): not offered: its family "
                                 "is unknown (no metadata or name hint); set `family` in the pools file's "
                                 "[split_models] or name it in [checkpoint_families]"]


def test_a_model_named_like_a_checkpoint_is_not_offered(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pools = pools_naming(tmp_path, '[split_models.dreamshaper_8]\ndiffusion = "flux1-dev.safetensors"\n'
                                   'text_encoders = ["clip_l.safetensors", "t5xxl_fp16.safetensors"]\n'
                                   'vae = "ae.safetensors"\n')
    checkpoints = {"sd15/dreamshaper_8.safetensors": "sd15"}
    assert "dreamshaper_8" not in offered({"gpu-0": server()}, pools, checkpoints)
    assert "its name is the checkpoint sd15/dreamshaper_8.safetensors's too" in decisions(caplog)[0]


async def test_the_catalog_reads_a_diffusion_model_family_from_its_metadata(tmp_path: Path) -> None:
    """Over a server's real routes: /object_info's loaders, /view_metadata/diffusion_models."""
    inventory = inventory_from_dict({
        "checkpoints": [{"name": "dreamshaper_8.safetensors", "family": "sd15"}],
        "diffusion_models": [{"name": "my_model.safetensors", "family": "flux",
                              "metadata": {"modelspec.architecture": "flux-1-dev"}}],
        "text_encoders": [{"name": "clip_l.safetensors"}, {"name": "t5xxl_fp16.safetensors"}],
        "vae": [{"name": "ae.safetensors"}]})
    server = SimulatedComfy(inventory, speed=0, output_dir=tmp_path)
    try:
        async with ServerPool([await server.start()], health_interval=60, timeout=5) as pool:
            await pool.refresh()
            catalog = await read_catalog(pool, PoolConfig({}, {}, {}))
    finally:
        await server.stop()
    assert catalog.checkpoints == {"dreamshaper_8.safetensors": "sd15", "my_model.safetensors": "flux"}
    assert catalog.split_models["my_model.safetensors"] == SplitModel(
        "my_model.safetensors", ("clip_l.safetensors", "t5xxl_fp16.safetensors"), "ae.safetensors")
    assert catalog.families() == ["sd15", "flux"]
