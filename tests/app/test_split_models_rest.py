"""Split-file models end to end: a Flux model that is only a diffusion file, its encoders and its VAE,
named in the pools file, is a family the servers have, renders, refines and is learnt like a checkpoint."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from draftgrid.launch import RunningApp

from .conftest import client_of, start_app, wait_done

REPO = Path(__file__).resolve().parents[2]
MODEL = "flux-dev"  # its name in the pools file: the arm the learning counts
POOLS = f'''[split_models."{MODEL}"]
diffusion = "flux1-dev.safetensors"
text_encoders = ["clip_l.safetensors", "t5xxl_fp8_e4m3fn.safetensors"]
vae = "ae.safetensors"
weight_dtype = "fp8_e4m3fn"
'''


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """One SD1.5 checkpoint and a split Flux model whose T5 is ambiguous (fp16 and fp8 on the
    servers), so only the pools file's naming offers it."""
    tmp = tmp_path_factory.mktemp("split")
    bundled = json.loads((REPO / "assets" / "sim_inventory.json").read_text())
    inventory = {
        "checkpoints": [c for c in bundled["checkpoints"] if c["name"] == "dreamshaper_8.safetensors"],
        "loras": [], "diffusion_models": bundled["diffusion_models"], "vae": bundled["vae"],
        "text_encoders": bundled["text_encoders"] + [{"name": "t5xxl_fp8_e4m3fn.safetensors", "size": 4893934904}]}
    (tmp / "inventory.json").write_text(json.dumps(inventory))
    (tmp / "pools.toml").write_text(POOLS)
    running: RunningApp = start_app(tmp, sim_inventory=tmp / "inventory.json", pools_file=tmp / "pools.toml")
    with client_of(running) as client:
        yield client
    running.close()


def test_a_family_with_only_a_split_model_is_available(split: httpx.Client) -> None:
    assert split.get("/api/families").json() == {"families": ["sd15", "flux"]}


def test_a_flux_batch_on_the_split_model_renders_refines_and_is_learnt(split: httpx.Client) -> None:
    response = split.post("/api/generate/batch", json={"prompt": "a lighthouse at dusk", "model_family": "flux",
                                                        "count": 3, "seed": 11, "session_id": "split"})
    assert response.status_code == 200, response.text
    assert response.json()["checkpoint_distribution"] == {MODEL: 3}
    batch = wait_done(split, response.json()["batch_id"])
    assert batch["status"] == "done" and batch["model_family"] == "flux"
    assert all(image["status"] == "done" and image["checkpoint"] == MODEL for image in batch["images"])
    png = Image.open(io.BytesIO(split.get(f"/api/images/{batch['images'][0]['image_id']}").content))
    graph = json.loads(png.info["prompt"])  # the graph that ran, as ComfyUI writes it into the PNG
    loaders = {node["class_type"]: node["inputs"] for node in graph.values() if "Loader" in node["class_type"]}
    assert loaders == {"UNETLoader": {"unet_name": "flux1-dev.safetensors", "weight_dtype": "fp8_e4m3fn"},
                       "DualCLIPLoader": {"clip_name1": "clip_l.safetensors",
                                          "clip_name2": "t5xxl_fp8_e4m3fn.safetensors", "type": "flux"},
                       "VAELoader": {"vae_name": "ae.safetensors"}}

    pick = batch["images"][0]["image_id"]
    assert split.post("/api/feedback", json={"batch_id": batch["batch_id"], "selected": [pick]}).status_code == 200
    assert split.get("/api/checkpoints/stats").json()[MODEL] == {"selected": 1, "total": 3,
                                                                 "selection_rate": pytest.approx(1 / 3)}

    refined = split.post("/api/generate/batch", json={"parent_image_ids": [pick], "session_id": "split"})
    assert refined.status_code == 200, refined.text
    [image] = wait_done(split, refined.json()["batch_id"])["images"]
    assert (image["status"], image["checkpoint"], image["seed"]) == ("done", MODEL, batch["images"][0]["seed"])

