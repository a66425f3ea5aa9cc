"""In-memory progress of running batches, with waiters.

DuckDB holds the facts; this board holds what only matters while a batch runs (completion order,
sampler progress, the latest preview) and wakes the UI's streaming generator on every change, so
the gallery fills image by image without polling the database.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class LiveBatch:
    """A snapshot of one batch's progress; `version` grows on every change, `images_version` only
    when what a batch view shows changes (an image running, done or failed; the end) — not on the
    many sampler steps and previews per second, so views need not be rebuilt for those."""

    batch_id: str
    total: int
    order: tuple[str, ...] = ()  # finished image ids, in order of completion
    failed: tuple[tuple[str, str], ...] = ()  # (image id, reason)
    running: frozenset[str] = frozenset()  # image ids whose job is sampling
    steps: tuple[int, int] = (0, 0)  # sampler steps done / expected over the whole batch
    preview: bytes | None = None
    finished: bool = False
    version: int = 0
    images_version: int = 0

    @property
    def done_count(self) -> int:
        return len(self.order)


class LiveBoard:
    """Thread-safe registry of `LiveBatch` snapshots; keeps the most recent `capacity` batches."""

    def __init__(self, capacity: int = 500) -> None:
        self._batches: OrderedDict[str, LiveBatch] = OrderedDict()
        self._lock = threading.RLock()
        # one condition per batch (sharing the lock): a sampler step wakes that batch's streams only,
        # not every stream of every user — steps arrive a hundred times a second across GPUs
        self._changed: dict[str, threading.Condition] = {}
        self._capacity = capacity

    def open(self, batch_id: str, total: int, expected_steps: int) -> None:
        with self._lock:
            self._batches[batch_id] = LiveBatch(batch_id, total, steps=(0, expected_steps))
            self._changed.setdefault(batch_id, threading.Condition(self._lock)).notify_all()
            while len(self._batches) > self._capacity:
                dropped, _ = self._batches.popitem(last=False)
                self._changed.pop(dropped).notify_all()

    def get(self, batch_id: str) -> LiveBatch | None:
        with self._lock:
            return self._batches.get(batch_id)

    def _update(self, batch_id: str, images: bool = False, **changes: object) -> None:
        """Replace the snapshot; `images`: the change shows in a batch view."""
        with self._lock:
            current = self._batches.get(batch_id)
            if current is None:
                return
            self._batches[batch_id] = replace(  # type: ignore[arg-type]
                current, version=current.version + 1, images_version=current.images_version + images, **changes)
            self._changed[batch_id].notify_all()

    def images_done(self, batch_id: str, image_ids: list[str]) -> None:
        """A job's images finished (one change for all of them)."""
        with self._lock:
            cur = self._batches.get(batch_id)
            if cur is None:
                return
            new = tuple(i for i in dict.fromkeys(image_ids) if i not in cur.order)
            if new:
                self._update(batch_id, images=True, order=cur.order + new, running=cur.running - set(new))

    def images_failed(self, batch_id: str, image_ids: list[str], reason: str) -> None:
        """Images that will never finish (one change for all of them)."""
        with self._lock:
            cur = self._batches.get(batch_id)
            if cur is None or not image_ids:
                return
            failed = {i for i, _ in cur.failed}
            new = tuple((i, reason) for i in dict.fromkeys(image_ids) if i not in failed)
            if new:
                self._update(batch_id, images=True, failed=cur.failed + new, running=cur.running - set(image_ids))

    def images_running(self, batch_id: str, image_ids: list[str]) -> None:
        with self._lock:
            cur = self._batches.get(batch_id)
            if cur is not None and not set(image_ids) <= cur.running:
                self._update(batch_id, images=True, running=cur.running | set(image_ids))

    def step(self, batch_id: str) -> None:
        """One sampler step done somewhere in the batch (drives the fine-grained progress bar)."""
        with self._lock:
            cur = self._batches.get(batch_id)
            if cur is not None:
                done, expected = cur.steps
                self._update(batch_id, steps=(min(done + 1, expected), expected))

    def preview(self, batch_id: str, image: bytes) -> None:
        with self._lock:
            cur = self._batches.get(batch_id)
            if cur is not None and not cur.finished:  # a late frame must not bring one back
                self._update(batch_id, preview=image)

    def finish(self, batch_id: str) -> None:
        """The batch ended; its preview goes (the UI shows none for an ended batch), so the board's
        `capacity` finished batches hold no image bytes."""
        self._update(batch_id, images=True, finished=True, running=frozenset(), preview=None)

    def wait(self, batch_id: str, after_version: int, timeout: float, images_only: bool = False) -> LiveBatch | None:
        """Block until the batch changes past `after_version` (its `images_version` with `images_only`),
        finishes, or `timeout` passes."""

        def ready() -> bool:
            b = self._batches.get(batch_id)
            return b is None or b.finished or (b.images_version if images_only else b.version) > after_version

        with self._lock:
            changed = self._changed.get(batch_id)
            if changed is not None:
                changed.wait_for(ready, timeout=timeout)
            return self._batches.get(batch_id)
