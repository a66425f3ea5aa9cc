"""A real DraftGrid app (Gradio + REST) on a free loopback port, backed by the built-in simulator;
and for the browser tests, Debian's Chromium driven by Playwright."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, sync_playwright

from bench.app_process import free_port
from draftgrid.bootstrap import start_backend
from draftgrid.config import AppConfig
from draftgrid.launch import RunningApp, launch


def start_app(tmp: Path, **overrides: Any) -> RunningApp:
    settings: dict[str, Any] = dict(db_path=tmp / "dg.duckdb", data_dir=tmp, port=free_port(), sim_gpus=2,
                                    sim_speed=0.0, sim_previews=False)
    config = AppConfig(**{**settings, **overrides})
    return launch(config, start_backend(config))


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    running = start_app(tmp_path_factory.mktemp("app"))
    yield running
    running.close()


def client_of(app: RunningApp) -> httpx.Client:
    """A REST client of a running app (use it as a context manager)."""
    return httpx.Client(base_url=app.local_url.rstrip("/"), timeout=30)


@pytest.fixture()
def client(app: RunningApp) -> Iterator[httpx.Client]:
    with client_of(app) as c:
        yield c


def wait_done(client: httpx.Client, batch_id: str, timeout: float = 60.0, **kw: Any) -> dict:
    """Poll the batch until it leaves queued/running."""
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(f"/api/batches/{batch_id}", **kw).json()
        if body["status"] not in ("queued", "running"):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"batch {batch_id} still {body['status']} after {timeout}s")
        time.sleep(0.05)


@pytest.fixture()
def generate(client: httpx.Client) -> Callable[..., dict]:
    def run(**body: Any) -> dict:
        response = client.post("/api/generate/batch", json={"prompt": "a cat", "session_id": "s1", **body})
        assert response.status_code == 200, response.text
        return response.json()
    return run


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage"]
NO_CHROMIUM = (f"Chromium is not installed at {CHROMIUM}: the browser tests need Debian's chromium. "
               "Install it with `make chromium` (or `apt-get install -y chromium` as root), or run `make test`, "
               "which installs it first.")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Chromium for a browser test module; without it the test fails at once, saying how to
    install it (never a skip)."""
    if not CHROMIUM.exists():
        pytest.fail(NO_CHROMIUM, pytrace=False)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def ui_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    """A fast app for a browser test module: the simulator at 500× with live previews."""
    running = start_app(tmp_path_factory.mktemp("browser"), sim_speed=500.0, sim_previews=True)
    yield running
    running.close()
