"""Image retention: keep the generated images under a disk budget and drop old drafts.

Only unprotected drafts are ever removed, oldest first: first every one older than `keep_days`,
then more until the images use no more than the budget. Protected — never removed, even when the
budget cannot be met (then one warning line says so) — are images of a non-draft tier (refine
outputs), selected images, refine parents (and so every image in the lineage of a refine), images
not done yet, and the parents of a refine being started right now; what counts as protected in
the database is one query (learning/store/retention_sql.py), where favourites will join.

`choose` is the pure decision. `Retention` runs it: after a batch ends (on the runner's loop, the
pass itself in a worker thread, at most one pass every `interval` seconds, and only when the
running disk total is over budget or an hourly age check is due, so the check costs nothing),
it marks the chosen images pruned in the store (through the single writer, protection checked
again there), then deletes their PNGs and thumbnails. The facts and the aggregates stay as they
were; the image's route answers 410 Gone and galleries show a placeholder.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from draftgrid.batch_state import BatchState
from draftgrid.image_files import ImageFiles
from learning.store.preference_store import PreferenceStore
from learning.store.timestamps import utc_now

log = logging.getLogger(__name__)

MB = 1_000_000  # --max-image-disk-mb counts decimal megabytes
PASS_INTERVAL = 3.0  # seconds: passes run at most this often
AGE_CHECK_INTERVAL = 3600.0  # seconds between passes that only look for expired drafts
STUCK_INTERVAL = 60.0  # seconds of rest after a pass that found only protected images left
REFINE_STARTING = "refine starting"  # a parent of a refine being planned right now


@dataclass(frozen=True)
class RetentionPolicy:
    """The budget (bytes) and how long drafts are kept."""

    max_bytes: int
    keep_days: float

    @classmethod
    def of(cls, max_image_disk_mb: int, keep_drafts_days: float) -> RetentionPolicy:
        return cls(max_image_disk_mb * MB, keep_drafts_days)

    def removed_detail(self, image_id: str) -> str:
        """Why an image's file is gone, for its route's 410 answer."""
        return (f"image {image_id} was removed to keep image storage under {self.max_bytes / MB:g} MB "
                f"(drafts you did not select are removed first, and drafts older than {self.keep_days:g} days); "
                "its settings and seed are kept, so it can be generated again")


@dataclass(frozen=True)
class Candidate:
    """An image file on disk: its size (PNG and thumbnails), age and why it must stay (if it must)."""

    image_id: str
    size: int
    created_at: datetime
    protected: tuple[str, ...] = ()


@dataclass(frozen=True)
class Decision:
    """What to prune (oldest first) and what that leaves."""

    prune: tuple[str, ...]
    expired: int  # how many of them are older than keep_days
    freed: int
    used_after: int
    over_budget: bool  # still over budget: every image left is protected
    protected: int  # how many candidates are protected


def choose(candidates: Iterable[Candidate], used: int, budget: int, now: datetime, keep_days: float) -> Decision:
    """The images to prune (pure): unprotected ones only, oldest first — every one older than
    `keep_days`, then more until `used` is at most `budget`. Protected images are never chosen,
    even if the budget then cannot be met (`over_budget`)."""
    pool = list(candidates)
    prunable = sorted((c for c in pool if not c.protected), key=lambda c: (c.created_at, c.image_id))
    cutoff = now - timedelta(days=keep_days)
    chosen: list[str] = []
    expired, left = 0, used
    for c in prunable:
        old = c.created_at < cutoff
        if not old and left <= budget:
            break  # sorted by age: nothing after this one is expired either
        chosen.append(c.image_id)
        expired += old
        left -= c.size
    return Decision(tuple(chosen), expired, used - left, left, left > budget, len(pool) - len(prunable))


class Retention:
    """Runs the policy: when a pass is due, what to prune, the store write, then the files."""

    def __init__(self, policy: RetentionPolicy, store: PreferenceStore, state: BatchState, files: ImageFiles, *,
                 interval: float = PASS_INTERVAL, now: Callable[[], datetime] = utc_now,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self._store = store
        self._state = state
        self._files = files
        self._interval = interval
        self._now = now
        self._clock = clock
        self._pins: Counter[str] = Counter()
        self._pins_lock = threading.Lock()  # held from reading the pins to the prune write's commit
        self._pass_lock = threading.Lock()  # one pass at a time
        self._task: asyncio.Task[None] | None = None  # the runner loop's pass scheduler, if running
        self._again = False
        self._closed = False
        self._last_pass = -float("inf")
        self._next_age_check = -float("inf")  # the first pass looks for expired drafts
        self._rest_until = -float("inf")
        self.pruned_count = 0  # images this process pruned

    # ------------------------------------------------------------------ protecting a refine's parents
    @contextmanager
    def protecting(self, image_ids: Sequence[str]) -> Iterator[None]:
        """Keep these images' files while a refine of them is planned and recorded: a pass waits
        (or skips them) until the new batch, which makes them refine parents, is stored."""
        if not image_ids:
            yield
            return
        with self._pins_lock:
            self._pins.update(image_ids)
        try:
            yield
        finally:
            with self._pins_lock:
                self._pins.subtract(image_ids)
                for image_id in image_ids:
                    if self._pins[image_id] <= 0:
                        del self._pins[image_id]

    # ------------------------------------------------------------------ when
    def due(self) -> bool:
        """Over budget (and not resting after a pass that found only protected images), or the
        age check is due. Costs a lock and a comparison."""
        now = self._clock()
        if self._files.used_bytes() > self.policy.max_bytes and now >= self._rest_until:
            return True
        return now >= self._next_age_check

    def request(self) -> None:
        """Call on the runner's loop (after a batch ended): start a pass soon if one is due."""
        if self._closed:
            return
        if self._task is not None and not self._task.done():
            self._again = True  # the running scheduler looks again after its pass
            return
        if self.due():
            self._task = asyncio.get_running_loop().create_task(self._passes())

    async def _passes(self) -> None:
        while not self._closed:
            wait = self._last_pass + self._interval - self._clock()
            if wait > 0:
                await asyncio.sleep(wait)
            self._again = False
            if self.due():
                try:
                    await asyncio.to_thread(self.prune)
                except Exception:  # the next batch's end tries again
                    log.exception("image retention pass failed")
            if not self._again:
                return

    def close(self) -> None:
        """No more passes; waits for a running one (call before the store closes)."""
        self._closed = True
        task = self._task
        if task is not None and not task.done():
            task.get_loop().call_soon_threadsafe(task.cancel)
        with self._pass_lock:
            pass

    # ------------------------------------------------------------------ one pass
    def prune(self) -> Decision:
        """One pass now: choose, record, delete. Thread-safe (passes run one at a time)."""
        with self._pass_lock:
            self._last_pass = self._clock()
            self._next_age_check = self._last_pass + AGE_CHECK_INTERVAL
            sizes = self._files.sizes()
            rows = self._store.retention_rows()
            self._remove_leftovers(sizes, {row.image_id for row in rows})
            with self._pins_lock:
                pinned = set(self._pins)
            candidates = [Candidate(r.image_id, sizes[r.image_id], r.created_at,
                                    r.protected + ((REFINE_STARTING,) if r.image_id in pinned else ()))
                          for r in rows if r.image_id in sizes]
            used = self._files.used_bytes()
            decision = choose(candidates, used, self.policy.max_bytes, self._now(), self.policy.keep_days)
            marked, freed = self._apply(decision)
            self._report(decision, marked, freed, used)
            return decision

    def _apply(self, decision: Decision) -> tuple[int, int]:
        """Record the chosen images as pruned (store first), then delete their files; returns how
        many were pruned (a selection or refine since the choice keeps an image) and bytes freed."""
        if not decision.prune:
            return 0, 0
        with self._pins_lock:  # a refine starting now waits until the write committed
            marked = self._state.images_pruned([i for i in decision.prune if i not in self._pins])
        self.pruned_count += len(marked)
        return len(marked), sum(self._files.remove(image_id) for image_id in marked)

    def _remove_leftovers(self, sizes: dict[str, int], listed: set[str]) -> None:
        """Files of images already marked pruned (a crash came between the mark and the delete)."""
        unlisted = [image_id for image_id in sizes if image_id not in listed]
        leftovers = self._store.pruned_among(unlisted) if unlisted else []
        if leftovers:
            freed = sum(self._files.remove(image_id) for image_id in leftovers)
            log.info("image retention: deleted the files of %d images pruned earlier (%.1f MB)",
                     len(leftovers), freed / MB)

    def _report(self, decision: Decision, marked: int, freed: int, used_before: int) -> None:
        budget = self.policy.max_bytes / MB
        used = self._files.used_bytes() / MB
        if decision.prune:
            log.info("image retention: removed %d draft images (%d older than %g days), freed %.1f MB; "
                     "images use %.1f MB of %g MB (were %.1f MB)", marked, decision.expired,
                     self.policy.keep_days, freed / MB, used, budget, used_before / MB)
        if decision.over_budget:
            self._rest_until = self._clock() + STUCK_INTERVAL
            log.warning("image retention: images use %.1f MB, over the %g MB budget, and the %d images left "
                        "are protected (selected, refine inputs and outputs, not finished); nothing more can "
                        "be removed", used, budget, decision.protected)
