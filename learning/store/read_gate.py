"""The read gate: many reads at once, or the store's re-open alone.

Why it exists: DuckDB keeps the blocks it has written cached (and its allocator keeps what it
freed), so a long-running app's RSS grows with every image it records, and only closing the
database gives that memory back (docs/RELIABILITY.md, "store memory"). The store therefore closes
and re-opens its file now and then, between two writes, on the writer thread. A read in flight on
a cursor being closed would fail, so every read passes this gate: reads share it, the re-open
takes it alone.

The re-open never waits long: it stops new reads from entering, waits for the reads in flight up
to a timeout and gives up (trying again later) when one of them is slow, so a long monitoring
query delays neither the writes behind the re-open nor the reads queued at the gate by more than
that timeout. A thread already reading may read again (a nested read never waits for a re-open
that is waiting for it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class ReadGate:
    """Shared entry for reads, exclusive entry (with a timeout) for the re-open."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._closed_to_readers = False
        self._local = threading.local()

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Hold the gate for one read (waits while a re-open holds it or is about to)."""
        depth = getattr(self._local, "depth", 0)
        if depth == 0:
            with self._cond:
                while self._closed_to_readers:
                    self._cond.wait()
                self._readers += 1
        self._local.depth = depth + 1
        try:
            yield
        finally:
            self._local.depth = depth
            if depth == 0:
                with self._cond:
                    self._readers -= 1
                    if self._readers == 0:
                        self._cond.notify_all()

    @contextmanager
    def alone(self, timeout: float) -> Iterator[bool]:
        """Hold the gate with no read in flight; yields False (holding nothing) when the reads in
        flight did not finish within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._closed_to_readers = True
            while self._readers:
                left = deadline - time.monotonic()
                if left <= 0:
                    self._closed_to_readers = False
                    self._cond.notify_all()
                    break
                self._cond.wait(left)
            acquired = self._closed_to_readers
        try:
            yield acquired
        finally:
            if acquired:
                with self._cond:
                    self._closed_to_readers = False
                    self._cond.notify_all()
