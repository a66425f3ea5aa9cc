"""Users are isolated under --auth; a dying server still completes the batch; no server → 503."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from draftgrid.launch import RunningApp
from tests.app.conftest import start_app, wait_done

ANN = ("ann", "ann-pass")
BOB = ("bob", "bob-pass")


@pytest.fixture(scope="module")
def auth_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    running = start_app(tmp_path_factory.mktemp("auth"), auth=(ANN, BOB))
    yield running
    running.close()


def _client(app: RunningApp, auth: tuple[str, str] | None) -> httpx.Client:
    return httpx.Client(base_url=app.local_url.rstrip("/"), auth=auth, timeout=30)


def test_every_route_needs_credentials(auth_app: RunningApp) -> None:
    with _client(auth_app, None) as anon, _client(auth_app, ("ann", "wrong")) as wrong:
        for c in (anon, wrong):
            for method, path in [("GET", "/api/gpus"), ("GET", "/api/checkpoints/stats"), ("GET", "/api/loras"),
                                 ("GET", "/api/keywords/stats"), ("GET", "/api/preferences/export"),
                                 ("GET", "/api/batches/x"), ("GET", "/api/images/x"),
                                 ("POST", "/api/generate/batch"), ("POST", "/api/feedback")]:
                r = c.request(method, path, json={"prompt": "cat"} if method == "POST" else None)
                assert r.status_code == 401, (method, path, r.status_code)


def test_two_users_are_isolated(auth_app: RunningApp) -> None:
    with _client(auth_app, ANN) as ann, _client(auth_app, BOB) as bob:
        ticket = ann.post("/api/generate/batch", json={"prompt": "anime girl", "count": 4}).json()
        batch = wait_done(ann, ticket["batch_id"])
        image = batch["images"][0]
        ann.post("/api/feedback", json={"batch_id": ticket["batch_id"], "selected": [image["image_id"]]})

        assert bob.get(f"/api/batches/{ticket['batch_id']}").status_code == 404
        assert bob.get(f"/api/images/{image['image_id']}").status_code == 404
        assert bob.post("/api/feedback", json={"batch_id": ticket["batch_id"],
                                               "selected": [image["image_id"]]}).status_code == 404
        refine = bob.post("/api/generate/batch", json={"prompt": "", "parent_image_ids": [image["image_id"]]})
        assert refine.status_code == 422
        assert sum(v["total"] for v in bob.get("/api/checkpoints/stats").json().values()) == 0
        assert sum(v["selected"] for v in ann.get("/api/checkpoints/stats").json().values()) == 1
        glob = ann.get("/api/checkpoints/stats", params={"scope": "global"}).json()
        assert sum(v["total"] for v in glob.values()) == 4


def test_a_server_dying_mid_batch_still_completes_the_batch(tmp_path: Path) -> None:
    running = start_app(tmp_path, sim_speed=500.0)
    try:
        servers = running.backend.simulator.servers  # type: ignore[union-attr]
        servers[0].faults.die_after_images = 3
        with _client(running, None) as c:
            ticket = c.post("/api/generate/batch", json={"prompt": "a lighthouse at dusk", "count": 20}).json()
            batch = wait_done(c, ticket["batch_id"], timeout=120)
            assert batch["status"] == "done", [i["error"] for i in batch["images"] if i["error"]]
            assert len(batch["images"]) == 20
            servers_used = {i["server"] for i in batch["images"]}
            assert servers[1].name in servers_used
            gpus = {g["name"]: g for g in c.get("/api/gpus").json()}
            assert gpus[servers[0].name]["online"] is False
    finally:
        running.close()


def test_no_server_online_is_503_and_writes_nothing(tmp_path: Path) -> None:
    running = start_app(tmp_path)
    try:
        sim = running.backend.simulator
        assert sim is not None
        for server in sim.servers:
            sim.call(server.stop())
        store = running.backend.store
        with _client(running, None) as c:
            deadline = time.monotonic() + 15  # the pool's health check (every 5 s) notices
            while any(g["online"] for g in c.get("/api/gpus").json()):
                assert time.monotonic() < deadline, "servers still reported online"
                time.sleep(0.2)
            r = c.post("/api/generate/batch", json={"prompt": "a cat", "count": 4})
            assert r.status_code == 503 and "online" in r.json()["detail"]
        assert store.recent_batches("local") == []
    finally:
        running.close()


def test_cancel_stops_a_running_batch_on_every_server(tmp_path: Path) -> None:
    running = start_app(tmp_path, sim_speed=2.0)  # slow enough to catch it mid-run
    try:
        with _client(running, None) as c:
            ticket = c.post("/api/generate/batch", json={"prompt": "a slow lighthouse", "count": 16}).json()
            r = c.post(f"/api/batches/{ticket['batch_id']}/cancel")
            assert r.status_code == 200
            batch = wait_done(c, ticket["batch_id"], timeout=30)
            assert batch["status"] in ("failed", "partial")
            cancelled = [i for i in batch["images"] if i["status"] == "failed"]
            assert cancelled and all("cancelled" in i["error"] for i in cancelled)
            assert c.post("/api/batches/nope/cancel").status_code == 404
            after = c.post("/api/generate/batch", json={"prompt": "next one", "count": 2, "seed": 1}).json()
            assert wait_done(c, after["batch_id"], timeout=60)["status"] == "done"  # nothing blocks the next
    finally:
        running.close()
