"""The crowd pool: the checkpoint aggregates of the users who share, pooled, for other users' priors.

One SQL read over `preference_stats` of the users whose choice in force is to share
(`learning.store.sharing`) gives each sharing user's decayed (keyword, checkpoint) counts; a
snapshot keeps their sums and each member's own part, so a user's prior is the pool *less their own
rows* in microseconds (no SQL on the recommendation path, nothing on the click path). A cell leaves
the store only when at least `MIN_CONTRIBUTORS` other users make it up: nothing of a single other
user is ever visible, only sums.

Freshness: the first read builds the snapshot; a read of a snapshot older than `MAX_AGE_SECONDS`
answers from it and has it rebuilt in the background (so an opted-in user's new reviews reach the
others within about a minute); a change of anyone's choice rebuilds it at once, before the call
that changed it returns (so an opt-out leaves the pool immediately). Rebuilds are serialised and
each reads the committed database, so the last one always reflects the last choice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass

import duckdb

from learning.models import ArmStat
from learning.store.counting_write_path import ALL_KEYWORDS
from learning.store.sharing import SHARING_USERS_SQL

log = logging.getLogger(__name__)

MIN_CONTRIBUTORS = 2  # other users a pooled (keyword, checkpoint) cell must come from to be shown
MAX_AGE_SECONDS = 60.0  # a snapshot older than this is rebuilt in the background on its next read

Cell = tuple[str, str]  # (keyword, checkpoint)
Row = tuple[str, str, str, float, float]  # (user_id, keyword, checkpoint, decayed shown, decayed selected)

_CROWD_ROWS_SQL = f"""
SELECT user_id, keyword, arm, w_shown, w_selected
FROM preference_stats_now($half_life)
WHERE arm_kind = 'checkpoint' AND keyword <> $all AND w_shown > 0
  AND user_id IN ({SHARING_USERS_SQL})
"""


def crowd_rows(cur: duckdb.DuckDBPyConnection, half_life: float) -> list[Row]:
    """Every sharing user's decayed checkpoint counts per keyword, as of each user's current review."""
    return cur.execute(_CROWD_ROWS_SQL, {"half_life": half_life, "all": ALL_KEYWORDS}).fetchall()


@dataclass(frozen=True)
class CrowdSnapshot:
    """The pool at one moment: per cell the sums and how many users add to it, and each member's part."""

    totals: dict[str, dict[str, tuple[float, float, int]]]  # keyword → checkpoint → (shown, selected, users)
    own: dict[str, dict[str, dict[str, tuple[float, float]]]]  # member → keyword → checkpoint → (shown, selected)
    taken_at: float

    @classmethod
    def of(cls, rows: Sequence[Row], taken_at: float) -> "CrowdSnapshot":
        totals: dict[str, dict[str, tuple[float, float, int]]] = {}
        own: dict[str, dict[str, dict[str, tuple[float, float]]]] = {}
        for user_id, keyword, arm, shown, selected in rows:
            by_arm = totals.setdefault(keyword, {})
            total_shown, total_selected, users = by_arm.get(arm, (0.0, 0.0, 0))
            by_arm[arm] = (total_shown + shown, total_selected + selected, users + 1)
            own.setdefault(user_id, {}).setdefault(keyword, {})[arm] = (shown, selected)
        return cls(totals, own, taken_at)

    @property
    def cells(self) -> int:
        return sum(len(by_arm) for by_arm in self.totals.values())

    def pooled_for(self, user_id: str, keywords: Sequence[str], arms: Sequence[str]) -> dict[Cell, ArmStat]:
        """The pool's cells for these keywords × checkpoints, the user's own rows taken out, each
        made up by at least MIN_CONTRIBUTORS other users."""
        mine = self.own.get(user_id, {})
        found = {}
        for keyword in dict.fromkeys(keywords):
            by_arm = self.totals.get(keyword)
            if by_arm is None:
                continue
            own_row = mine.get(keyword, {})
            for arm in arms:
                total = by_arm.get(arm)
                if total is None:
                    continue
                shown, selected, users = total
                if arm in own_row:
                    own_shown, own_selected = own_row[arm]
                    shown, selected, users = shown - own_shown, selected - own_selected, users - 1
                if users >= MIN_CONTRIBUTORS and shown > 0:
                    found[(keyword, arm)] = ArmStat(shown, min(max(selected, 0.0), shown))
        return found


class CrowdPool:
    """The cached snapshot and its rebuilds; `load` reads the rows on the calling thread's cursor."""

    def __init__(self, load: Callable[[], list[Row]], background: Callable[[], Executor], *,
                 max_age: float = MAX_AGE_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self._load = load
        self._background = background  # the executor for rebuilds off the request path (made on first use)
        self._max_age = max_age
        self._clock = clock
        self._snapshot: CrowdSnapshot | None = None
        self._rebuild_lock = threading.Lock()  # held through a rebuild's read
        self._pending_lock = threading.Lock()  # never held through a read: the recommendation path takes it
        self._pending: Future[CrowdSnapshot] | None = None

    def pooled(self, user_id: str, keywords: Sequence[str], arms: Sequence[str]) -> dict[Cell, ArmStat]:
        """The pool for this user's prior: other sharing users' evidence, as of the snapshot."""
        snapshot = self._snapshot or self.rebuild()
        if self._clock() - snapshot.taken_at > self._max_age:
            self._rebuild_soon()
        return snapshot.pooled_for(user_id, keywords, arms)

    def rebuild(self) -> CrowdSnapshot:
        """Read the pool again now (serialised with other rebuilds) and keep it."""
        with self._rebuild_lock:
            started = time.perf_counter()
            rows = self._load()
            snapshot = self._snapshot = CrowdSnapshot.of(rows, self._clock())
        log.info("crowd pool rebuilt: %d sharing users, %d rows, %d cells in %.1f ms", len(snapshot.own),
                 len(rows), snapshot.cells, (time.perf_counter() - started) * 1e3)
        return snapshot

    def sharing_changed(self) -> None:
        """Someone's choice changed (committed): a pool in use is rebuilt before this returns."""
        if self._snapshot is not None:
            self.rebuild()

    def _rebuild_soon(self) -> None:
        with self._pending_lock:
            if self._pending is not None and not self._pending.done():
                return
            self._pending = self._background().submit(self.rebuild)
        self._pending.add_done_callback(_log_failed_rebuild)


def _log_failed_rebuild(future: Future[CrowdSnapshot]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("crowd pool rebuild failed (the previous snapshot stays in use): %s", future.exception())
