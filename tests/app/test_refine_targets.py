"""Where "Refine selected" goes comes from the pools file: the next tier by default, nothing above
quality unless the file maps it — and then a quality image can be refined too."""

from __future__ import annotations

from pathlib import Path

import httpx

from learning.pools import DEFAULT_POOLS_PATH
from tests.app.conftest import start_app, wait_done


def quality_image(client: httpx.Client) -> str:
    ticket = client.post("/api/generate/batch", json={"prompt": "a red barn", "count": 1, "tier": "quality"}).json()
    batch = wait_done(client, ticket["batch_id"])
    assert batch["status"] == "done", batch
    return batch["images"][0]["image_id"]


def test_an_unmapped_quality_image_cannot_be_refined_and_says_how(tmp_path: Path) -> None:
    app = start_app(tmp_path)
    try:
        with httpx.Client(base_url=app.local_url.rstrip("/"), timeout=30) as client:
            response = client.post("/api/generate/batch", json={"parent_image_ids": [quality_image(client)]})
            assert response.status_code == 422
            assert "[refine]" in response.json()["detail"]
    finally:
        app.close()


def test_a_refine_entry_for_the_quality_tier_is_followed(tmp_path: Path) -> None:
    pools = tmp_path / "pools.toml"
    text = DEFAULT_POOLS_PATH.read_text().replace('[refine]\n', '[refine]\nsd15_quality = "sdxl_quality"\n')
    pools.write_text(text)
    app = start_app(tmp_path, pools_file=pools)
    try:
        with httpx.Client(base_url=app.local_url.rstrip("/"), timeout=30) as client:
            response = client.post("/api/generate/batch", json={"parent_image_ids": [quality_image(client)]})
            assert response.status_code == 200, response.text
            batch = wait_done(client, response.json()["batch_id"])
            assert batch["status"] == "done" and (batch["tier"], batch["model_family"]) == ("quality", "sdxl")
    finally:
        app.close()
