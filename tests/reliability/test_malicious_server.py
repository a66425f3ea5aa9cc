"""A misbehaving or malicious ComfyUI server next to a healthy simulator in one app.

For every way the double (tests/reliability/malicious_comfy.py) misbehaves, a batch must end with
each image done or failed with a readable reason, the bad server must show up as faulty in
GET /api/gpus (or be named in the failed images' reasons when only its pictures were bad), the app
must write nothing outside its data folder, its memory must stay bounded, and it must keep serving.
The image-count misbehaviours (`POOL_LEVEL`) are tested against the pool itself: what it yields
for them is the contract of comfy/models.py's `PoolEvent`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from comfy.models import GenerationSpec, ImageResult, JobFailed, PoolEvent, PoolJob
from comfy.pool import ServerPool
from comfy.simulator import SimulatorThread
from draftgrid.launch import RunningApp
from draftgrid.live import LiveBatch
from draftgrid.service import BatchView
from learning.models import DEFAULT_USER
from draftgrid.ui import _preview
from tests.reliability.conftest import api, assert_store_consistent, start_app
from tests.reliability.malicious_comfy import MaliciousComfy, Misbehaviour, bomb_png, png_bytes

INVENTORY_NODES = ("CheckpointLoaderSimple", "LoraLoader", "KSampler")
RSS_HEADROOM = 150 * 1024 * 1024
# the protocol was followed but the image count is wrong: checked by their own test below
POOL_LEVEL = (Misbehaviour.FEWER_IMAGES, Misbehaviour.DUPLICATE_IMAGES)
APP_LEVEL = [m for m in Misbehaviour if m not in POOL_LEVEL]


@dataclass
class Setup:
    app: RunningApp
    evil: MaliciousComfy
    healthy_name: str
    evil_name: str
    root: Path  # everything the test created; only data_dir (and the simulator's own disk) may change
    data_dir: Path
    sim_dir: Path


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


class PeakRss:
    """Samples this process's RSS on a thread until stopped; the app runs in this process."""

    def __init__(self) -> None:
        self.baseline = rss_bytes()
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss_bytes())

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def tree(root: Path, *skip: Path) -> set[str]:
    """Every path under `root` except inside `skip` (the app's data folder, the simulator's disk)."""
    return {str(p) for p in root.rglob("*") if not any(s == p or s in p.parents for s in skip)}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("malicious")
    sim_dir = root / "sim"
    sim = SimulatorThread(count=1, speed=0.0, output_dir=sim_dir)
    sim_url = sim.start()[0]
    with httpx.Client(base_url=sim_url) as c:
        object_info = {node: c.get(f"/object_info/{node}").json()[node] for node in INVENTORY_NODES}
    evil = MaliciousComfy(Misbehaviour.TRAVERSAL_NAMES, object_info, f"dg-escape-{uuid.uuid4().hex}.png")
    evil_url = evil.start()
    data_dir = root / "data"
    app = start_app(data_dir, comfy_urls=(sim_url, evil_url), data_dir=data_dir)
    try:
        yield Setup(app, evil, "gpu-0", "gpu-1", root, data_dir, sim_dir)
    finally:
        app.close()
        evil.stop()
        sim.stop()


def bring_back(setup: Setup) -> dict[str, dict]:
    """End the double's quarantine, health-check now and return the servers by name."""
    for member in setup.app.backend.pool._members.values():
        member.quarantined_until = 0.0
    setup.app.backend.service.refresh_catalog()
    with api(setup.app) as c:
        return {g["name"]: g for g in c.get("/api/gpus").json()}


def wait_settled(app: RunningApp, batch_id: str, timeout: float = 60.0, user: str = DEFAULT_USER) -> None:
    """Block on the batch's stream (woken by the live board, not polling) until it has finished."""
    views = list(app.backend.service.stream(user, batch_id, timeout=timeout))
    assert views[-1].status not in ("queued", "running"), f"batch {batch_id} still {views[-1].status} after {timeout}s"


@pytest.mark.parametrize("misbehaviour", APP_LEVEL, ids=[m.name.lower() for m in APP_LEVEL])
def test_a_malicious_server_cannot_hurt_the_app(setup: Setup, misbehaviour: Misbehaviour) -> None:
    setup.evil.misbehaviour = misbehaviour
    setup.evil.workflows.clear()
    servers = bring_back(setup)
    expect_online = misbehaviour is not Misbehaviour.GARBAGE_HEALTH
    assert servers[setup.evil_name]["online"] is expect_online, servers[setup.evil_name]
    before = tree(setup.root, setup.data_dir, setup.sim_dir)

    with PeakRss() as rss, api(setup.app) as c:
        answer = c.post("/api/generate/batch", json={"prompt": "a lighthouse at dusk", "count": 12, "seed": 7})
        assert answer.status_code == 200, answer.text
        batch_id = answer.json()["batch_id"]
        wait_settled(setup.app, batch_id)
        batch = c.get(f"/api/batches/{batch_id}").json()
        servers = {g["name"]: g for g in c.get("/api/gpus").json()}

    if expect_online:
        assert setup.evil.workflows, "the scheduler gave the hostile server nothing to do"
    images = batch["images"]
    assert len(images) == 12 and all(i["status"] in ("done", "failed") for i in images)
    failed = [i for i in images if i["status"] == "failed"]
    assert all(i["error"] and len(i["error"]) < 2000 for i in failed), failed
    evil = servers[setup.evil_name]
    if misbehaviour is Misbehaviour.BAD_PREVIEWS:  # previews are optional: bad frames are skipped
        assert batch["status"] == "done" and setup.evil_name in {i["server"] for i in images}
    else:
        # offline with its last_error, and kept out (quarantined) although its health checks pass
        assert not evil["online"] and evil["last_error"], evil
        # its jobs ran again on the healthy simulator
        assert batch["status"] == "done", [i["error"] for i in failed]
        assert {i["server"] for i in images} == {setup.healthy_name}

    assert tree(setup.root, setup.data_dir, setup.sim_dir) == before, "something was written outside the data folder"
    assert not Path("/tmp", setup.evil.escape_name).exists()
    assert not any(setup.root.rglob(setup.evil.escape_name))
    print(f"\n{misbehaviour.name}: peak RSS +{(rss.peak - rss.baseline) >> 20} MiB, {len(failed)} failed image(s), "
          f"{setup.evil_name} online={evil['online']}")  # the figures in docs/RELIABILITY.md (-s)
    assert rss.peak - rss.baseline < RSS_HEADROOM, f"RSS grew by {(rss.peak - rss.baseline) >> 20} MiB"
    assert_store_consistent(setup.app.backend.store)


@pytest.mark.parametrize("misbehaviour", POOL_LEVEL, ids=[m.name.lower() for m in POOL_LEVEL])
def test_a_server_returning_the_wrong_number_of_images_ends_every_image(setup: Setup,
                                                                       misbehaviour: Misbehaviour) -> None:
    """Fewer images than the batch size: those it sent are kept, the rest fail saying so.
    Duplicates and extras: each image is stored once and the batch completes."""
    setup.evil.misbehaviour = misbehaviour
    setup.evil.workflows.clear()
    bring_back(setup)
    with api(setup.app) as c:
        answer = c.post("/api/generate/batch", json={"prompt": "a lighthouse at dusk", "count": 12, "seed": 7})
        assert answer.status_code == 200, answer.text
        batch_id = answer.json()["batch_id"]
        wait_settled(setup.app, batch_id)
        batch = c.get(f"/api/batches/{batch_id}").json()
        done = [i for i in batch["images"] if i["status"] == "done"]
        assert all(c.get(i["url"]).content.startswith(b"\x89PNG") for i in done)
    assert setup.evil.workflows, "the scheduler gave the hostile server nothing to do"
    images = batch["images"]
    assert len(images) == 12 and all(i["status"] in ("done", "failed") for i in images)
    assert len({i["image_id"] for i in images}) == 12
    failed = [i for i in images if i["status"] == "failed"]
    if misbehaviour is Misbehaviour.FEWER_IMAGES:
        assert batch["status"] == "partial" and failed, batch["status"]
        assert all(f"server {setup.evil_name} returned" in i["error"] for i in failed), [i["error"] for i in failed]
        assert setup.evil_name in {i["server"] for i in done}  # what it did send was kept
    else:
        assert batch["status"] == "done", [i["error"] for i in failed]
    assert_store_consistent(setup.app.backend.store)


def test_the_app_still_serves_after_all_that(setup: Setup) -> None:
    setup.evil.misbehaviour = Misbehaviour.TRAVERSAL_NAMES
    with api(setup.app) as c:
        answer = c.post("/api/generate/batch", json={"prompt": "a red fox", "count": 2})
        assert answer.status_code == 200, answer.text
        wait_settled(setup.app, answer.json()["batch_id"])
        assert c.get("/").status_code == 200
        assert c.get("/api/checkpoints/stats").status_code == 200


@pytest.mark.parametrize("side", [10_000, 30_000])  # under and over Pillow's own bomb error threshold
def test_a_bomb_preview_is_never_handed_to_gradio(side: int) -> None:
    """The UI streams the latest preview as a PIL image, which Gradio decodes in full."""
    def view(preview: bytes) -> BatchView:
        return BatchView(batch=None, status="running", images=(), live=LiveBatch("b", 1, preview=preview))  # type: ignore[arg-type]

    assert _preview(view(bomb_png(side))) is None
    assert _preview(view(png_bytes(64, 64))).size == (64, 64)  # type: ignore[union-attr]


# ---------------------------------------------------------------------------- the pool on its own


@pytest.fixture(scope="module")
def object_info(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A healthy simulator's inventory nodes, for the double to copy."""
    sim = SimulatorThread(count=1, speed=0.0, output_dir=tmp_path_factory.mktemp("pool-sim"))
    sim_url = sim.start()[0]
    try:
        with httpx.Client(base_url=sim_url) as c:
            yield {node: c.get(f"/object_info/{node}").json()[node] for node in INVENTORY_NODES}
    finally:
        sim.stop()


@contextlib.asynccontextmanager
async def evil_pool(misbehaviour: Misbehaviour, object_info: dict) -> AsyncIterator[tuple[ServerPool, MaliciousComfy]]:
    """A pool whose only server is the double (so every job lands on it), named "evil"."""
    evil = MaliciousComfy(misbehaviour, object_info, f"dg-escape-{uuid.uuid4().hex}.png")
    evil.start()
    try:
        async with ServerPool([evil.url], names=["evil"], health_interval=60, timeout=10) as pool:
            yield pool, evil
    finally:
        evil.stop()


async def run_jobs(pool: ServerPool, sizes: dict[str, int]) -> list[PoolEvent]:
    """Run one job per entry (job id -> batch size) to the end, as a consumer must: aclosing. An
    ancestral sampler keeps each job whole (never split into pieces), so one prompt per job."""
    checkpoint = pool.inventory_union().checkpoints[0]
    jobs = [PoolJob(job_id, GenerationSpec(checkpoint=checkpoint, positive="a red fox", negative="", seed=3,
                                           width=512, height=512, steps=4, cfg=7.0, batch_size=size,
                                           sampler_name="euler_ancestral"))
            for job_id, size in sizes.items()]
    async with asyncio.timeout(30), contextlib.aclosing(pool.run(jobs, "count")) as events:
        return [event async for event in events]


async def test_a_server_returning_fewer_images_yields_those_and_one_readable_failure(object_info: dict) -> None:
    async with evil_pool(Misbehaviour.FEWER_IMAGES, object_info) as (pool, _):
        events = await run_jobs(pool, {"four": 4, "one": 1})
    images = sorted((e.job_id, e.batch_index) for e in events if isinstance(e, ImageResult))
    assert images == [("four", 0), ("four", 1), ("four", 2)]
    failed = sorted((e.job_id, e.reason, e.server) for e in events if isinstance(e, JobFailed))
    assert failed == [("four", "server evil returned 3 of 4 images", "evil"),
                      ("one", "server evil returned 0 of 1 images", "evil")]
    ends = [i for i, e in enumerate(events) if getattr(e, "job_id", None) == "four"]
    assert isinstance(events[ends[-1]], JobFailed)  # the failure is the job's last event


async def test_duplicate_and_extra_images_are_dropped_with_one_log_line(
        object_info: dict, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="comfy.pool"):
        async with evil_pool(Misbehaviour.DUPLICATE_IMAGES, object_info) as (pool, evil):
            events = await run_jobs(pool, {"four": 4})
    assert not [e for e in events if isinstance(e, JobFailed)]
    assert sorted(e.batch_index for e in events if isinstance(e, ImageResult)) == [0, 1, 2, 3]
    assert evil.view_requests == 4  # the dropped ones were never downloaded
    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped) == 1 and "6 duplicate or out-of-range" in dropped[0], dropped
