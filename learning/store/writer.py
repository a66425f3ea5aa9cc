"""The single writer: every write to the store runs on one thread, one transaction per call.

DuckDB lets concurrent transactions conflict when they update the same row ("Conflict on
update!"); preference aggregates are exactly such hot rows. Serialising writes through one
thread removes the conflicts, and callers block on a future, so a returned call is committed.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Callable, TypeVar

import duckdb

log = logging.getLogger(__name__)

T = TypeVar("T")
WriteFn = Callable[[duckdb.DuckDBPyConnection], T]
# Runs on the writer thread right after a COMMIT, before the caller is answered (so a caller
# that got its answer sees whatever this updated).
AfterCommit = Callable[[duckdb.DuckDBPyConnection], None]
# Runs on the writer thread between two writes, outside any transaction, and returns the cursor
# the writer uses from then on (the store's re-open hands back one of its new connection).
Maintenance = Callable[[duckdb.DuckDBPyConnection], duckdb.DuckDBPyConnection]

_STOP = object()

# Queue priorities: a user's click must not wait behind anything else, a user waiting for a new
# batch's ticket not behind image bookkeeping, and nothing behind a compaction.
URGENT, PROMPT, NORMAL, BACKGROUND = 0, 1, 2, 3
_STOP_PRIORITY = 4  # after everything already queued


@dataclass(frozen=True)
class _Maintenance:
    fn: Maintenance
    future: Future[None]


class WriterClosedError(RuntimeError):
    """A write was submitted after the store was closed."""


class SerialWriter:
    """Runs write functions one at a time in their own transaction on a dedicated cursor.

    Queued writes run by priority, then in arrival order. Reordering is safe: each write reads
    the state it changes inside its own transaction, and facts take their sequence number when
    they are written, which is the order a rebuild replays.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, name: str = "duckdb-writer") -> None:
        self._cursor = con.cursor()
        self._queue: queue.PriorityQueue[tuple[int, int, object]] = queue.PriorityQueue()
        self._arrivals = itertools.count()
        self._closed = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: WriteFn[T], after_commit: AfterCommit | None = None, priority: int = NORMAL) -> T:
        """Run `fn(cursor)` in one transaction on the writer thread; return its result or raise."""
        return self.enqueue(fn, after_commit, priority).result()

    def enqueue(self, fn: WriteFn[T], after_commit: AfterCommit | None = None, priority: int = NORMAL) -> Future[T]:
        """Queue `fn(cursor)` to run in its own transaction; the future resolves after commit
        (and after `after_commit`, which only runs when the commit succeeded)."""
        future: Future[T] = Future()
        self._put(priority, (fn, after_commit, future))
        return future

    def maintain(self, fn: Maintenance, priority: int = BACKGROUND) -> Future[None]:
        """Queue `fn(cursor)` to run between two writes with no transaction open; the cursor it
        returns replaces the writer's (so `fn` may close the old one and the connection)."""
        future: Future[None] = Future()
        self._put(priority, _Maintenance(fn, future))
        return future

    def _put(self, priority: int, item: object) -> None:
        with self._lock:
            if self._closed:
                raise WriterClosedError("the preference store is closed")
            self._queue.put((priority, next(self._arrivals), item))

    def close(self) -> None:
        """Finish queued writes, then stop the thread and close its cursor."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put((_STOP_PRIORITY, next(self._arrivals), _STOP))
        self._thread.join()
        self._cursor.close()

    def _run(self) -> None:
        while True:
            _, _, item = self._queue.get()
            if item is _STOP:
                return
            if isinstance(item, _Maintenance):
                self._maintain(item)
                continue
            fn, after_commit, future = item  # type: ignore[misc]
            if future.set_running_or_notify_cancel():
                self._execute(fn, after_commit, future)

    def _maintain(self, item: _Maintenance) -> None:
        if not item.future.set_running_or_notify_cancel():
            return
        try:
            self._cursor = item.fn(self._cursor)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller through the future
            log.error("store maintenance failed: %s: %s", type(exc).__name__, exc)
            item.future.set_exception(exc)
        else:
            item.future.set_result(None)

    def _execute(
        self, fn: WriteFn[object], after_commit: AfterCommit | None, future: Future[object]
    ) -> None:
        cur = self._cursor
        try:
            cur.execute("BEGIN TRANSACTION")
            result = fn(cur)
            cur.execute("COMMIT")
        except BaseException as exc:  # noqa: BLE001 - handed to the caller through the future
            try:
                cur.execute("ROLLBACK")
            except duckdb.Error:
                log.debug("rollback after a failed write found no open transaction")
            log.info("write rolled back: %s: %s", type(exc).__name__, exc)
            future.set_exception(exc)
            return
        try:
            if after_commit is not None:
                after_commit(cur)
        except Exception as exc:  # noqa: BLE001 - the caller learns it; the writer carries on
            log.error("a committed write's follow-up failed: %s: %s", type(exc).__name__, exc)
            future.set_exception(exc)
        else:
            future.set_result(result)
