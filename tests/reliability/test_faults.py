"""ComfyUI servers that die, come back, hang or lose a checkpoint: every batch ends (done, or
partial/failed with a per-image reason), the store stays consistent, and the next batch completes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from draftgrid.launch import RunningApp
from tests.reliability.conftest import (
    api, assert_store_consistent, sim_call, start_app, table_counts, wait_done, wait_gpus,
)

GPU0, GPU1 = "sim-gpu-0", "sim-gpu-1"
DREAMSHAPER = "dreamshaper_8.safetensors"  # one of the three sd15 draft checkpoints
TIMEOUT = 1.0  # seconds before a silent server counts as hung (the default is 30)


@pytest.fixture()
def app(tmp_path: Path) -> Iterator[RunningApp]:
    running = start_app(tmp_path, comfy_timeout=TIMEOUT, health_interval=0.2)
    yield running
    running.close()


@pytest.fixture()
def client(app: RunningApp) -> Iterator[httpx.Client]:
    with api(app) as c:
        yield c


def generate(client: httpx.Client, count: int = 12, **extra: object) -> dict:
    response = client.post("/api/generate/batch", json={"prompt": "a lighthouse at dusk", "count": count, **extra})
    assert response.status_code == 200, response.text
    return response.json()


def assert_complete(client: httpx.Client, ticket: dict) -> dict:
    """The batch finished with every image done, each with a file and a server."""
    batch = wait_done(client, ticket["batch_id"])
    assert batch["status"] == "done", {i["image_id"]: i["error"] for i in batch["images"] if i["error"]}
    assert len(batch["images"]) == ticket["total_count"]
    for image in batch["images"]:
        assert image["server"] in (GPU0, GPU1) and image["url"] == f"/api/images/{image['image_id']}"
        assert client.get(image["url"]).content.startswith(b"\x89PNG")
    return batch


def test_server_killed_mid_batch_restarted_and_killed_again(app: RunningApp, client: httpx.Client) -> None:
    gpu0 = app.backend.simulator.servers[0]  # type: ignore[union-attr]
    gpu0.faults.die_after_images = 2  # dies on its second image, inside a prompt
    first = assert_complete(client, generate(client, count=20))
    # gpu0's unfinished prompt was re-run on gpu1; gpu0 may have finished one image first (a server
    # whose first image races the other's starts on a one-image prompt), never its second
    servers = [i["server"] for i in first["images"]]
    assert servers.count(GPU0) <= 1 and servers.count(GPU1) >= 19
    wait_gpus(client, {GPU0: False, GPU1: True})

    sim_call(app, gpu0.restart())
    wait_gpus(client, {GPU0: True})
    second = assert_complete(client, generate(client, count=20))
    assert GPU0 in {i["server"] for i in second["images"]}  # the restarted server took work again

    gpu0.faults.die_after_images = 1
    assert_complete(client, generate(client, count=20))
    wait_gpus(client, {GPU0: False})
    assert_complete(client, generate(client, count=8))
    assert_store_consistent(app.backend.store)


def test_all_servers_down_then_one_back(app: RunningApp, client: httpx.Client) -> None:
    servers = app.backend.simulator.servers  # type: ignore[union-attr]
    for server in servers:
        server.faults.die_after_images = 1  # both die inside their first prompt
    lost = wait_done(client, generate(client, count=20)["batch_id"])
    assert lost["status"] == "failed"
    assert all(i["status"] == "failed" and i["error"] for i in lost["images"])

    before = table_counts(app.backend.store)
    refused = client.post("/api/generate/batch", json={"prompt": "a lighthouse", "count": 4})
    assert refused.status_code == 503 and "no ComfyUI server is online" in refused.json()["detail"]
    assert table_counts(app.backend.store) == before  # a refused request writes nothing

    sim_call(app, servers[1].restart())
    back = assert_complete(client, generate(client, count=8))
    assert {i["server"] for i in back["images"]} == {GPU1}
    assert_store_consistent(app.backend.store)


def test_hung_server_times_out_and_its_work_moves(app: RunningApp, client: httpx.Client) -> None:
    gpu0 = app.backend.simulator.servers[0]  # type: ignore[union-attr]
    gpu0.faults.hang = True  # accepts connections, never answers
    batch = assert_complete(client, generate(client, count=16))
    assert {i["server"] for i in batch["images"]} == {GPU1}
    hung = {g["name"]: g for g in wait_gpus(client, {GPU0: False})}[GPU0]
    assert "timed out" in hung["last_error"] or "no answer" in hung["last_error"]

    gpu0.faults.hang = False
    wait_gpus(client, {GPU0: True})
    assert_complete(client, generate(client, count=8))
    assert_store_consistent(app.backend.store)


def test_every_server_hung_ends_the_batch_and_refuses_the_next(app: RunningApp, client: httpx.Client) -> None:
    """The servers hang while the batch runs: it ends by time-out, every image saying so."""
    import time  # local: only this test needs them

    from comfy.simulator import TimeModel

    servers = app.backend.simulator.servers  # type: ignore[union-attr]
    instant = [server.time_model for server in servers]
    for server in servers:  # a prompt now takes minutes: at speed 0 it would be over before the hang
        server.time_model = TimeModel(checkpoint_load={"sd15": 120.0, "sdxl": 120.0}, step_seconds=30.0)
    ticket = generate(client, count=8)
    assert all(ticket["gpu_distribution"].get(name) for name in (GPU0, GPU1)), ticket["gpu_distribution"]
    deadline = time.monotonic() + 30
    while not all(server.queue.running for server in servers):  # each GPU runs a prompt of the batch
        assert time.monotonic() < deadline, "the batch never ran on every GPU"
        time.sleep(0.01)
    for server in servers:
        server.faults.hang = True
    started = time.monotonic()
    stuck = wait_done(client, ticket["batch_id"])  # ends by time-out, not an eternal wait
    assert time.monotonic() - started < 30 * TIMEOUT  # far sooner than the minutes the prompt takes
    assert stuck["status"] == "failed", stuck["status"]
    for image in stuck["images"]:
        assert image["status"] == "failed" and ("timed out" in image["error"] or "no answer" in image["error"]), image
    gpus = wait_gpus(client, {GPU0: False, GPU1: False})
    assert all("timed out" in g["last_error"] or "no answer" in g["last_error"] for g in gpus), gpus
    assert client.post("/api/generate/batch", json={"prompt": "a cat"}).status_code == 503

    for server, model in zip(servers, instant):
        server.time_model = model
    servers[0].faults.hang = False
    httpx.post(f"{servers[0].url}/interrupt", timeout=10)  # its frozen prompt would still take minutes
    wait_gpus(client, {GPU0: True})
    assert_complete(client, generate(client, count=8))
    assert_store_consistent(app.backend.store)


def test_checkpoint_deleted_between_planning_and_running(tmp_path: Path) -> None:
    # health checks far apart: the pool plans on the inventory it read before the deletion
    running = start_app(tmp_path, health_interval=3600)
    try:
        servers = running.backend.simulator.servers  # type: ignore[union-attr]
        with api(running) as client:
            servers[0].remove_checkpoint(DREAMSHAPER)
            ticket = generate(client, count=12, tier="draft", seed=5)
            assert DREAMSHAPER in ticket["checkpoint_distribution"]
            batch = assert_complete(client, ticket)  # gpu0's validation error → re-placed on gpu1
            assert {i["server"] for i in batch["images"] if i["checkpoint"] == DREAMSHAPER} == {GPU1}

            servers[1].remove_checkpoint(DREAMSHAPER)  # now on no server
            ticket = generate(client, count=12, tier="draft", seed=5)
            assert DREAMSHAPER in ticket["checkpoint_distribution"]
            batch = wait_done(client, ticket["batch_id"])
            assert batch["status"] == "partial"
            for image in batch["images"]:
                if image["checkpoint"] == DREAMSHAPER:
                    assert image["status"] == "failed" and DREAMSHAPER in image["error"]
                else:
                    assert image["status"] == "done"

            # the next plan knows the checkpoint is gone and completes
            following = generate(client, count=12, tier="draft", seed=5)
            assert DREAMSHAPER not in following["checkpoint_distribution"]
            assert_complete(client, following)
        assert_store_consistent(running.backend.store)
    finally:
        running.close()
