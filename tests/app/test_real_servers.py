"""`--comfy URL` drives separately started ComfyUI servers through the same code path.

The servers here are the simulator's CLI in its own process — to the app, just ComfyUI servers at
URLs — so no banner claims simulation and the whole batch runs over the real protocol.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from draftgrid.launch import RunningApp
from tests.app.conftest import start_app, wait_done


@pytest.fixture(scope="module")
def external_servers() -> Iterator[list[str]]:
    proc = subprocess.Popen([sys.executable, "-m", "comfy.simulator", "--port", "0", "--gpus", "2", "--speed", "0"],
                            stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])
    assert proc.stdout is not None
    urls = [proc.stdout.readline().strip() for _ in range(2)]
    try:
        assert all(u.startswith("http://127.0.0.1:") for u in urls), urls
        yield urls
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def app(external_servers: list[str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    running = start_app(tmp_path_factory.mktemp("real"), comfy_urls=tuple(external_servers))
    yield running
    running.close()


def test_batch_runs_on_the_given_servers(app: RunningApp, external_servers: list[str]) -> None:
    assert app.backend.simulator is None and not app.backend.service.simulated
    with httpx.Client(base_url=app.local_url.rstrip("/"), timeout=30) as c:
        gpus = c.get("/api/gpus").json()
        assert sorted(g["url"] for g in gpus) == sorted(external_servers)
        assert all(g["online"] and not g["simulated"] for g in gpus)
        ticket = c.post("/api/generate/batch", json={"prompt": "cyberpunk city at night, neon", "count": 8,
                                                     "model_family": "sdxl"}).json()
        batch = wait_done(c, ticket["batch_id"])
        assert batch["status"] == "done" and len(batch["images"]) == 8
        assert all("XL" in i["checkpoint"] or "xl" in i["checkpoint"] for i in batch["images"])
        # Auto-LoRA on sdxl picks the sdxl cyberpunk LoRA, never an sd15 one
        names = {l["name"] for i in batch["images"] for l in i["loras"]}
        assert "cyberpunk_neon_xl.safetensors" in names
        assert not names & {"anime_style_v2.safetensors", "fantasy_landscape.safetensors", "detailed_hair.safetensors"}
        page = c.get("/")
        assert page.status_code == 200


def test_ui_has_no_simulator_banner_for_real_servers(app: RunningApp) -> None:
    config = httpx.get(app.local_url.rstrip("/") + "/config", timeout=30).json()
    assert "dg-sim-banner" not in str(config)
