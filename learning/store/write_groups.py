"""Group commit for image bookkeeping: finished jobs that wait for the writer share one transaction.

Under load the single writer is busy more than half the time, and most of its writes are image
bookkeeping — one `update_images` per finished ComfyUI job, each paying its own BEGIN, statement
planning and COMMIT (with its WAL sync) — while a person's click waits for the write in flight
(docs/RELIABILITY.md, "Load"). A `WriteGroup` lets the jobs that finish while the writer is busy
ride in one write: the first caller queues the write, later callers add their part to it until
the writer starts it, and every caller returns only after that write committed, so "write the
store, then the board" still holds for each of them. With an idle writer a part is written at
once, alone, as before.

Each part is applied by its own call in the shared transaction, in arrival order, so the group
ends exactly where the parts one by one would. A part that fails (an unknown image, say) rolls
the whole transaction back; then every caller of that group writes its own part again alone, so
each gets its own verdict and no part is lost for another's error.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Callable, Generic, TypeVar

import duckdb

from learning.store.fact_writes import WriteContext

P = TypeVar("P")
ApplyPart = Callable[[duckdb.DuckDBPyConnection, P, WriteContext], None]
GroupWrite = Callable[[duckdb.DuckDBPyConnection, WriteContext], None]
# Queue a write (one transaction) and hand back its future, resolved after the commit.
Enqueue = Callable[[GroupWrite], "Future[None]"]
# Run a write (one transaction) and return after its commit, or raise its error.
WriteNow = Callable[[GroupWrite], None]


class _OpenGroup(Generic[P]):
    def __init__(self) -> None:
        self.parts: list[P] = []
        self.written: Future[None] | None = None


class WriteGroup(Generic[P]):
    """Parts handed in while the writer is busy are applied in one transaction."""

    def __init__(self, apply_part: ApplyPart[P], enqueue: Enqueue, write_now: WriteNow) -> None:
        self._apply_part = apply_part
        self._enqueue = enqueue
        self._write_now = write_now
        self._lock = threading.Lock()
        self._open: _OpenGroup[P] | None = None

    def write(self, part: P) -> None:
        """Apply `part`, grouped with the parts that wait beside it; returns after the commit."""
        with self._lock:
            group = self._open
            if group is None:
                group = _OpenGroup()
                # queued before it is open to others: if queueing fails, nothing is left open
                group.written = self._enqueue(lambda cur, ctx: self._apply_group(cur, ctx, group))
                self._open = group
            group.parts.append(part)
            written = group.written
        assert written is not None
        try:
            written.result()
        except Exception:
            if len(self._close(group)) == 1:
                raise
            self._write_now(lambda cur, ctx: self._apply_part(cur, part, ctx))

    def _close(self, group: _OpenGroup[P]) -> list[P]:
        """No part joins `group` from now on (a failed write may never have reached the writer
        thread to close it); returns its parts."""
        with self._lock:
            if self._open is group:
                self._open = None
            return list(group.parts)

    def _apply_group(self, cur: duckdb.DuckDBPyConnection, ctx: WriteContext, group: _OpenGroup[P]) -> None:
        """On the writer thread: close the group to newcomers, then apply its parts in order."""
        for part in self._close(group):
            self._apply_part(cur, part, ctx)
