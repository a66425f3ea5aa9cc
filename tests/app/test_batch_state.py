"""Interleavings of a running batch's writes and a poll's reads never show a finished batch with an
unfinished image.

The writer (the batch runner's calls into `BatchState`) and a reader (polls through
`BatchState.view`) run on two threads; every primitive they perform on the store or the live
board waits at a turnstile for its turn in a schedule that hypothesis draws. Each schedule is
one real interleaving of the real code; the invariant is checked on every view the reader gets.
A reader that reads the store before the board (the old order) is caught by the same checker.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from draftgrid.batch_reader import build_view
from draftgrid.batch_state import BatchState
from draftgrid.live import LiveBoard
from draftgrid.views import BatchView
from learning.models import ImageStatus
from learning.store.preference_store import PreferenceStore
from tests.learning.store_builders import make_batch, make_image

UNFINISHED = ("queued", "running")
WRITER, READER = "W", "R"


class Turnstile:
    """Lets gated calls through one at a time, in the order of a schedule of thread names: a turn
    lasts from `enter` to `leave`, so the next call starts only once the previous one has ended (a
    turn that ended at entry let a reader's store read run after the writer's later calls). A
    thread that has finished (or whose turn never comes) is skipped, so nothing waits forever."""

    def __init__(self, schedule: list[str]) -> None:
        self._schedule = list(schedule)
        self._done: set[str] = set()
        self._busy = False
        self._cond = threading.Condition()

    def _turn(self) -> str | None:
        while self._schedule and self._schedule[0] in self._done:
            self._schedule.pop(0)
        return self._schedule[0] if self._schedule else None

    def enter(self, who: str) -> None:
        with self._cond:
            ok = self._cond.wait_for(lambda: not self._busy and self._turn() in (who, None), timeout=10)
            assert ok, "turnstile stuck"
            if self._schedule:
                self._schedule.pop(0)
            self._busy = True

    def leave(self) -> None:
        with self._cond:
            self._busy = False
            self._cond.notify_all()

    def finished(self, who: str) -> None:
        with self._cond:
            self._done.add(who)
            self._cond.notify_all()


class Gated:
    """A proxy whose named methods pass the turnstile first, as the calling thread's name."""

    def __init__(self, target: Any, gate: Turnstile, methods: set[str]) -> None:
        self._target, self._gate, self._methods = target, gate, methods

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if name not in self._methods:
            return attr

        def gated(*args: Any, **kwargs: Any) -> Any:
            self._gate.enter(threading.current_thread().name)
            try:
                return attr(*args, **kwargs)
            finally:
                self._gate.leave()

        return gated


STORE_CALLS = {"update_images", "batch_snapshot"}
BOARD_CALLS = {"images_done", "images_failed", "images_running", "finish", "get"}

# a job's outcome: all its images done, some done and the rest failed, or all failed
outcomes = st.lists(st.tuples(st.integers(1, 4), st.sampled_from(["done", "partial", "failed"])),
                    min_size=1, max_size=4)


@pytest.fixture(scope="module")
def store() -> Iterator[PreferenceStore]:
    with PreferenceStore.open(":memory:") as s:
        yield s


def run_batch(state: BatchState, jobs: list[tuple[list[str], str]], batch_id: str) -> None:
    """The writer: what `BatchRunner` does per job, then the end of the batch."""
    for image_ids, outcome in jobs:
        state.images_running(batch_id, image_ids)
        kept = {"done": image_ids, "partial": image_ids[: len(image_ids) // 2], "failed": []}[outcome]
        if kept:
            state.images_done(batch_id, [ImageStatus(i, "done", "gpu", f"/x/{i}.png") for i in kept])
        lost = [i for i in image_ids if i not in kept]
        if lost:
            state.images_failed(batch_id, lost, "server lost")
    state.finish(batch_id)


def poll_until_ended(read: Callable[[], BatchView], seen: list[BatchView]) -> None:
    """Poll until the batch reads ended (the writer always ends it; the cap only stops a bug)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        view = read()
        seen.append(view)
        if view.status not in UNFINISHED:
            return


def interleave(store: PreferenceStore, job_outcomes: list[tuple[int, str]], schedule: list[str], batch_id: str,
               *, store_first: bool = False) -> list[BatchView]:
    """Run the writer and a polling reader under `schedule`; every view the reader got."""
    batch = make_batch(batch_id, count=sum(n for n, _ in job_outcomes))
    images, jobs, k = [], [], 0
    for size, outcome in job_outcomes:
        ids = []
        for _ in range(size):
            image = make_image(batch, k, status="queued")
            images.append(image)
            ids.append(image.image_id)
            k += 1
        jobs.append((ids, outcome))
    gate = Turnstile(schedule)
    board = LiveBoard()
    gated_store, gated_board = Gated(store, gate, STORE_CALLS), Gated(board, gate, BOARD_CALLS)
    BatchState(store, board).open(batch, images, expected_steps=0)  # before either thread starts
    state = BatchState(gated_store, gated_board)  # type: ignore[arg-type]

    def wrong_order_read() -> BatchView:  # the old code: store first, then the board
        snapshot = gated_store.batch_snapshot(batch_id)
        return build_view(batch_id, gated_board.get(batch_id), snapshot)

    def right_order_read() -> BatchView:
        return state.view(batch_id, lambda live, snap: build_view(batch_id, live, snap))

    seen: list[BatchView] = []
    errors: list[BaseException] = []

    def thread(who: str, body: Callable[[], None]) -> threading.Thread:
        def run() -> None:
            try:
                body()
            except BaseException as exc:  # surfaced below
                errors.append(exc)
            finally:
                gate.finished(who)
        return threading.Thread(target=run, name=who)

    threads = [thread(WRITER, lambda: run_batch(state, jobs, batch_id)),
               thread(READER, lambda: poll_until_ended(wrong_order_read if store_first else right_order_read, seen))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not errors, errors
    return seen


def violations(seen: list[BatchView]) -> list[tuple[str, list[str]]]:
    return [(v.status, [i.record.image_id for i in v.images if i.status in UNFINISHED])
            for v in seen if v.status not in UNFINISHED and any(i.status in UNFINISHED for i in v.images)]


counter = iter(range(10**9))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(job_outcomes=outcomes, schedule=st.lists(st.sampled_from([WRITER, READER]), min_size=0, max_size=60))
def test_no_interleaving_shows_a_finished_batch_with_an_unfinished_image(
        store: PreferenceStore, job_outcomes: list[tuple[int, str]], schedule: list[str]) -> None:
    seen = interleave(store, job_outcomes, schedule, f"b{next(counter)}")
    assert seen and seen[-1].status not in UNFINISHED
    assert not violations(seen)
    expected = {i.record.image_id: i.status for i in seen[-1].images}
    assert all(s in ("done", "failed") for s in expected.values())


def test_the_checker_catches_the_old_read_order(store: PreferenceStore) -> None:
    """Store read, then the writer ends the batch, then the board read: 'failed' beside queued images."""
    # the reader reads the store (R), the writer runs everything (W...), the reader reads the board (R)
    schedule = [READER] + [WRITER] * 10 + [READER] * 4
    seen = interleave(store, [(2, "done")], schedule, "old-order", store_first=True)
    assert violations(seen), [v.status for v in seen]
