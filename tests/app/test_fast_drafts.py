"""Fast drafts: the draft tier runs on an accelerator LoRA the servers have; refines drop it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.bench_scheduler import replay_draft
from draftgrid.launch import RunningApp

from .conftest import start_app, wait_done

REPO = Path(__file__).resolve().parents[2]
LIGHTNING = "sdxl_lightning_4step_lora.safetensors"
SCHNELL = "flux1-schnell-fp8.safetensors"
DEV = {"flux1-dev-fp8.safetensors", "flux1-dev.safetensors"}  # the bundled all-in-one and split-file dev models


@pytest.fixture(scope="module")
def fast_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """The bundled inventory plus an SDXL Lightning LoRA (kohya metadata, SDXL base)."""
    tmp = tmp_path_factory.mktemp("fast")
    inventory = json.loads((REPO / "assets" / "sim_inventory.json").read_text())
    inventory["loras"].append({"name": LIGHTNING, "family": "sdxl", "size": 393854592, "metadata": {
        "modelspec.architecture": "stable-diffusion-xl-v1-base/lora", "modelspec.title": "SDXL-Lightning 4-step",
        "ss_base_model_version": "sdxl_base_v1-0"}})
    inventory["checkpoints"].append({"name": SCHNELL, "family": "flux", "size": 17246524772, "metadata": {
        "modelspec.architecture": "flux-1-schnell", "modelspec.title": "FLUX.1 [schnell] fp8"}})
    path = tmp / "inventory.json"
    path.write_text(json.dumps(inventory))
    running: RunningApp = start_app(tmp, sim_inventory=path)
    with httpx.Client(base_url=running.local_url.rstrip("/"), timeout=30) as client:
        yield client
    running.close()


def draft(client: httpx.Client, family: str = "sdxl", **body: object) -> tuple[dict, dict]:
    response = client.post("/api/generate/batch", json={"prompt": "a lighthouse at dusk", "model_family": family,
                                                         "count": 4, "auto_lora": False, **body})
    assert response.status_code == 200, response.text
    ticket = response.json()
    return ticket, wait_done(client, ticket["batch_id"])


@pytest.mark.parametrize("family", ["sdxl", "pony", "illustrious"])
def test_an_sdxl_family_draft_uses_the_lightning_lora_with_its_settings(fast_client: httpx.Client, family: str) -> None:
    ticket, batch = draft(fast_client, family)
    assert "Fast drafts on: " + LIGHTNING in ticket["strategy"]["message"]
    for image in batch["images"]:
        assert image["status"] == "done"
        assert image["loras"] == []  # on the job, not the image: infrastructure, never learnt from
        assert (image["steps"], image["cfg"]) == (4, 1.0)


def test_fast_drafts_off_runs_the_family_settings_without_the_lora(fast_client: httpx.Client) -> None:
    ticket, batch = draft(fast_client, fast_drafts=False)
    assert "Fast drafts" not in ticket["strategy"]["message"]
    assert all(image["loras"] == [] and image["steps"] == 12 for image in batch["images"])


def test_a_family_without_an_accelerator_drafts_at_full_settings(fast_client: httpx.Client) -> None:
    _, batch = draft(fast_client, "sd15")
    assert all(image["loras"] == [] and image["steps"] == 12 for image in batch["images"])


def test_a_refine_drops_the_accelerator_and_keeps_the_seed(fast_client: httpx.Client) -> None:
    _, batch = draft(fast_client)
    parent = batch["images"][0]
    response = fast_client.post("/api/generate/batch", json={"parent_image_ids": [parent["image_id"]]})
    assert response.status_code == 200, response.text
    refined = wait_done(fast_client, response.json()["batch_id"])
    [image] = refined["images"]
    assert image["status"] == "done" and image["seed"] == parent["seed"]
    assert image["loras"] == [] and image["steps"] == 25 and refined["tier"] == "standard"


def test_a_refine_uses_its_tiers_cfg_unless_the_user_set_one(fast_client: httpx.Client) -> None:
    _, batch = draft(fast_client)  # drafted at the accelerator's CFG 1.0
    parents = [image["image_id"] for image in batch["images"][:2]]
    tier_cfg = fast_client.post("/api/generate/batch", json={"parent_image_ids": parents[:1]})
    explicit = fast_client.post("/api/generate/batch", json={"parent_image_ids": parents[1:], "cfg": 4.5})
    assert tier_cfg.status_code == explicit.status_code == 200, (tier_cfg.text, explicit.text)
    [image] = wait_done(fast_client, tier_cfg.json()["batch_id"])["images"]
    assert image["cfg"] == 6.0  # sdxl standard's, not the draft's
    [chosen] = wait_done(fast_client, explicit.json()["batch_id"])["images"]
    assert chosen["cfg"] == 4.5


def test_auto_lora_never_picks_the_accelerator_as_a_style(fast_client: httpx.Client) -> None:
    _, batch = draft(fast_client, fast_drafts=False, auto_lora=True, prompt="lightning fast sdxl lightning")
    assert all(LIGHTNING not in [lora["name"] for lora in image["loras"]] for image in batch["images"])


def test_a_flux_draft_runs_on_schnell_and_its_refine_on_dev(fast_client: httpx.Client) -> None:
    ticket, batch = draft(fast_client, "flux")
    assert "Fast drafts on: " + SCHNELL in ticket["strategy"]["message"]
    assert all(i["checkpoint"] == SCHNELL and (i["steps"], i["cfg"]) == (4, 1.0) for i in batch["images"])
    response = fast_client.post("/api/generate/batch", json={"parent_image_ids": [batch["images"][0]["image_id"]]})
    assert response.status_code == 200, response.text
    [image] = wait_done(fast_client, response.json()["batch_id"])["images"]
    assert image["checkpoint"] in DEV and image["steps"] == 20
    assert image["seed"] == batch["images"][0]["seed"]


def test_a_flux_draft_without_fast_drafts_runs_on_dev(fast_client: httpx.Client) -> None:
    _, batch = draft(fast_client, "flux", fast_drafts=False)
    assert all(i["checkpoint"] in DEV and i["steps"] == 14 for i in batch["images"])


@pytest.mark.parametrize("counts, warm", [((20,), True), ((7, 7, 6), False)], ids=["quick-warm", "explore-cold"])
def test_lightning_drafts_through_the_scheduler_on_the_time_model(counts: tuple[int, ...], warm: bool) -> None:
    """The bench's fast-draft row without the noise of a shared machine: the app's planner and the
    pool's scheduler and learners on two GPUs of the simulator's time model (deterministic, model
    seconds, no wall clock). One warm checkpoint: ≥ 3× faster with the Lightning LoRA; three cold
    SDXL checkpoints: their loads stay, but each side stays within 1.15× of its lower bound."""
    without, with_lightning = (replay_draft(on, counts, warm) for on in (False, True))
    assert with_lightning.makespan <= 1.15 * with_lightning.bound
    assert min(with_lightning.images.values()) > 0
    if warm:
        assert without.makespan >= 3 * with_lightning.makespan
    else:
        assert without.makespan <= 1.15 * without.bound
