"""Every image of a batch ends done or failed with a reason, whatever the pool delivers: duplicates,
indexes past the batch size, fewer images then a failure, events of unknown jobs, a pool that
raises mid-batch, or one that just ends early."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image

from comfy.models import ImageResult, JobFailed, PoolEvent, PoolJob
from draftgrid.batch_planner import PlannedBatch
from draftgrid.batch_runner import CANCELLED, BatchRunner
from draftgrid.batch_state import BatchState
from draftgrid.image_files import ImageFiles
from draftgrid.planning import CheckpointGroup, RenderSettings, plan_txt2img
from draftgrid.runtime import LoopThread
from learning.models import Recommendation
from learning.store.preference_store import PreferenceStore
from tests.learning.store_builders import make_batch

Script = Callable[[list[PoolJob]], list[PoolEvent]]


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), "white").save(out, format="PNG")
    return out.getvalue()


PNG = png()


def image(job: PoolJob, index: int) -> ImageResult:
    return ImageResult(job.job_id, index, "gpu0", PNG, f"{index}.png", "prompt", 0.1)


class ScriptedPool:
    """A pool that yields what a script says, then ends (or raises what the script holds)."""

    def __init__(self, script: Script, raise_after: Exception | None = None) -> None:
        self.script, self.raise_after = script, raise_after
        self.closed = False

    def plan(self, jobs: list[PoolJob]) -> dict[str, int]:
        return {"gpu0": sum(j.spec.batch_size for j in jobs)}

    async def run(self, jobs: list[PoolJob], batch_key: str) -> AsyncIterator[PoolEvent]:
        try:
            for event in self.script(jobs):
                yield event
            if self.raise_after is not None:
                raise self.raise_after
        finally:
            self.closed = True

    async def cancel(self, batch_key: str) -> None:
        return None


@pytest.fixture(scope="module")
def loop() -> Iterator[LoopThread]:
    runner = LoopThread("test-runner")
    yield runner
    runner.stop()


@pytest.fixture()
def store() -> Iterator[PreferenceStore]:
    with PreferenceStore.open(":memory:") as s:
        yield s


def run(store: PreferenceStore, loop: LoopThread, tmp_path: Path, pool: ScriptedPool,
        sizes: tuple[int, ...] = (4, 4)) -> dict[str, tuple[str, str | None]]:
    """Start a batch of jobs of `sizes` on `pool`, wait for its end; image id → (status, error)."""
    groups = [CheckpointGroup(f"ck{k}", size, (), "a cat") for k, size in enumerate(sizes)]
    settings = RenderSettings(512, 512, 8, 5.0, "euler", "normal")
    plan = plan_txt2img(groups, negative="", settings=settings, base_seed=1, family="sd15", max_batch=4)
    rec = Recommendation("explore", "ck0", 0.0, {g.checkpoint: g.count for g in groups}, {}, [], "test")
    state = BatchState(store)
    runner = BatchRunner(store, state, pool, loop, ImageFiles(tmp_path))  # type: ignore[arg-type]
    ticket = runner.start(PlannedBatch(make_batch("b1"), plan, rec))
    done = state.wait(ticket.batch_id, -1, timeout=0)
    while done is not None and not done.finished:
        done = state.wait(ticket.batch_id, done.version, timeout=10)
    rows = store.read_sql("SELECT image_id, status, error FROM images WHERE batch_id = ?", [ticket.batch_id])
    assert pool.closed, "the pool's iterator was not closed"
    return {r.image_id: (r.status, r.error) for r in rows.itertuples()}


def settled(result: dict[str, tuple[str, str | None]]) -> None:
    for status, error in result.values():
        assert status in ("done", "failed")
        assert status == "done" or error, "a failed image without a reason"


def test_duplicates_and_out_of_range_images_are_dropped(store, loop, tmp_path) -> None:  # type: ignore[no-untyped-def]
    def script(jobs: list[PoolJob]) -> list[PoolEvent]:
        a, b = jobs
        return [image(a, 0), image(a, 0), image(a, 1), image(a, 9), image(a, 2), image(a, 3),
                *(image(b, i) for i in (3, 2, 1, 0, 1))]

    result = run(store, loop, tmp_path, ScriptedPool(script))
    assert [s for s, _ in result.values()] == ["done"] * 8


def test_fewer_images_then_a_failure_keeps_what_arrived(store, loop, tmp_path) -> None:  # type: ignore[no-untyped-def]
    def script(jobs: list[PoolJob]) -> list[PoolEvent]:
        a, b = jobs
        return [image(a, 0), image(a, 2), JobFailed(a.job_id, "server gpu0 returned 2 of 4 images", "gpu0"),
                *(image(b, i) for i in range(4))]

    result = run(store, loop, tmp_path, ScriptedPool(script))
    settled(result)
    assert sorted(s for s, _ in result.values()) == ["done"] * 6 + ["failed"] * 2
    assert {e for s, e in result.values() if s == "failed"} == {"server gpu0 returned 2 of 4 images"}


def test_a_pool_that_ends_early_fails_the_rest_with_a_reason(store, loop, tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = run(store, loop, tmp_path, ScriptedPool(lambda jobs: [image(jobs[0], 0), image(jobs[0], 1)]))
    settled(result)
    assert sorted(s for s, _ in result.values()) == ["failed"] * 8  # job 0 never completed: nothing saved
    assert {e for _, e in result.values()} == {CANCELLED}


def test_a_pool_that_raises_ends_the_batch_and_is_closed(store, loop, tmp_path) -> None:  # type: ignore[no-untyped-def]
    def script(jobs: list[PoolJob]) -> list[PoolEvent]:
        return [*(image(jobs[0], i) for i in range(4)), JobFailed("not-a-job", "stray", None)]

    result = run(store, loop, tmp_path, ScriptedPool(script, raise_after=RuntimeError("boom")))
    settled(result)
    assert sorted(s for s, _ in result.values()) == ["done"] * 4 + ["failed"] * 4
