"""Every registry family over REST: available ones render, missing ones are a 422 naming the rest."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from draftgrid.launch import RunningApp
from families.registry import registry

from .conftest import client_of, start_app, wait_done

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def classic_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    """Servers with SD1.5 and SDXL checkpoints only (two SDXL, one SD1.5)."""
    tmp = tmp_path_factory.mktemp("classic")
    bundled = json.loads((REPO / "assets" / "sim_inventory.json").read_text())
    keep = {"dreamshaper_8.safetensors", "juggernautXL_v9.safetensors", "realvisxlV40.safetensors"}
    inventory = tmp / "inventory.json"
    inventory.write_text(json.dumps({"checkpoints": [c for c in bundled["checkpoints"] if c["name"] in keep],
                                     "loras": bundled["loras"]}))
    running = start_app(tmp, sim_inventory=inventory)
    yield running
    running.close()


@pytest.fixture()
def classic(classic_app: RunningApp) -> Iterator[httpx.Client]:
    with client_of(classic_app) as client:
        yield client


def test_families_lists_what_the_servers_have_best_represented_first(classic: httpx.Client) -> None:
    assert classic.get("/api/families").json() == {"families": ["sdxl", "sd15"]}


@pytest.mark.parametrize("family", [f for f in registry().names if f not in ("sd15", "sdxl")])
def test_a_family_without_a_model_is_422_listing_the_available_ones(classic: httpx.Client, family: str) -> None:
    response = classic.post("/api/generate/batch", json={"prompt": "a cat", "model_family": family, "count": 2})
    assert response.status_code == 422
    assert response.json()["detail"] == f"no {family} model is on the servers; families available: sdxl, sd15"


@pytest.mark.parametrize("family", registry().names)
def test_every_registry_family_renders_on_the_bundled_simulator(client: httpx.Client, family: str) -> None:
    response = client.post("/api/generate/batch", json={"prompt": "a lighthouse", "model_family": family,
                                                         "count": 2, "session_id": f"fam-{family}"})
    assert response.status_code == 200, response.text
    body = wait_done(client, response.json()["batch_id"])
    assert body["status"] == "done" and body["model_family"] == family
    assert all(image["status"] == "done" for image in body["images"])


def test_ui_family_selector_offers_only_the_servers_families_best_first_preselected(classic_app: RunningApp) -> None:
    [selector] = [b for b in classic_app.demo.blocks.values() if getattr(b, "elem_id", None) == "dg-family"]
    assert [value for _, value in selector.choices] == ["sdxl", "sd15"]
    assert selector.value == "sdxl"


@pytest.mark.parametrize(("quality_tags", "positive"), [(True, "score_9, score_8_up, score_7_up, a lighthouse"),
                                                        (False, "a lighthouse")])
def test_pony_quality_tags_are_an_optional_prefix(client: httpx.Client, quality_tags: bool, positive: str) -> None:
    response = client.post("/api/generate/batch", json={"prompt": "a lighthouse", "model_family": "pony", "count": 1,
                                                         "auto_lora": False, "fast_drafts": False,
                                                         "quality_tags": quality_tags})
    assert response.status_code == 200, response.text
    [image] = wait_done(client, response.json()["batch_id"])["images"]
    png = Image.open(io.BytesIO(client.get(f"/api/images/{image['image_id']}").content))
    graph = json.loads(png.info["prompt"])  # the graph that ran, as ComfyUI writes it into the PNG
    assert [n["inputs"]["text"] for n in graph.values() if n["_meta"]["title"] == "Positive"] == [positive]


def test_the_bundled_simulator_offers_its_split_flux_model_without_configuration(client: httpx.Client) -> None:
    rec = client.get("/api/recommendation", params={"prompt": "a lighthouse", "model_family": "flux"}).json()
    assert "flux1-dev.safetensors" in rec["allocation"]
