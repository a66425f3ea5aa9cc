"""Group commit of image bookkeeping (learning/store/write_groups.py): parts that wait for a busy
writer share one transaction; each caller returns after the commit; a failing part fails only its
own caller; with an idle writer every part is its own write."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from typing import Any

import duckdb
import pytest

from learning.models import ImageStatus
from learning.store.preference_store import PreferenceStore
from learning.store.write_groups import WriteGroup
from learning.store.writer import SerialWriter
from tests.learning.store_builders import add_simple_batch


class Rows:
    """A table of ints written through a SerialWriter, and a WriteGroup over it that counts the
    writes it queues."""

    def __init__(self) -> None:
        self.con = duckdb.connect(":memory:")
        self.con.execute("CREATE TABLE t (x INTEGER PRIMARY KEY)")
        self.writer = SerialWriter(self.con)
        self.queued = 0
        self.group: WriteGroup[list[int]] = WriteGroup(self._insert, self._enqueue, self._write_now)

    @staticmethod
    def _insert(cur: duckdb.DuckDBPyConnection, part: list[int], ctx: Any) -> None:
        cur.executemany("INSERT INTO t VALUES (?)", [[x] for x in part])

    def _enqueue(self, fn: Any) -> Future[None]:
        self.queued += 1
        return self.writer.enqueue(lambda cur: fn(cur, None))

    def _write_now(self, fn: Any) -> None:
        self._enqueue(fn).result()

    def stored(self) -> list[int]:
        return [x for (x,) in self.con.cursor().execute("SELECT x FROM t ORDER BY x").fetchall()]

    def hold_writer(self) -> threading.Event:
        """Keep the writer busy with a write until the returned event is set."""
        release = threading.Event()
        started = threading.Event()
        self.writer.enqueue(lambda cur: (started.set(), release.wait(30)))
        assert started.wait(30)
        return release

    def waiting_parts(self) -> int:
        group = self.group._open
        return 0 if group is None else len(group.parts)

    def close(self) -> None:
        self.writer.close()
        self.con.close()


@pytest.fixture()
def rows() -> Any:
    r = Rows()
    yield r
    r.close()


def _write_in_threads(rows: Rows, parts: list[list[int]]) -> dict[int, BaseException | None]:
    """Each part written by its own thread while the writer is held; returns each part's outcome
    (by its first value) once all are done."""
    outcome: dict[int, BaseException | None] = {}

    def write(part: list[int]) -> None:
        try:
            rows.group.write(part)
            outcome[part[0]] = None
        except BaseException as exc:  # noqa: BLE001 - the test reads it
            outcome[part[0]] = exc

    release = rows.hold_writer()
    threads = [threading.Thread(target=write, args=(part,)) for part in parts]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while rows.waiting_parts() < len(parts):  # every part has joined the open group
        assert time.monotonic() < deadline, "the parts never joined one group"
        time.sleep(0.005)
    release.set()
    for thread in threads:
        thread.join(30)
    return outcome


def test_parts_waiting_for_a_busy_writer_share_one_write(rows: Rows) -> None:
    parts = [[10 * k + i for i in range(3)] for k in range(6)]
    outcome = _write_in_threads(rows, parts)
    assert outcome == {part[0]: None for part in parts}
    assert rows.queued == 1
    assert rows.stored() == sorted(x for part in parts for x in part)


def test_a_failing_part_fails_only_its_own_caller(rows: Rows) -> None:
    rows.group.write([5])
    parts = [[1, 2], [5, 6], [3]]  # 5 is stored already: that part breaks the shared transaction
    outcome = _write_in_threads(rows, parts)
    assert outcome[1] is None and outcome[3] is None
    assert isinstance(outcome[5], duckdb.ConstraintException)
    assert rows.stored() == [1, 2, 3, 5]  # the failed part wrote none of its rows (6 is absent)
    # the shared write, then each of its three parts again alone, after the first write of [5]
    assert rows.queued == 1 + 1 + 3


def test_with_an_idle_writer_each_part_is_its_own_write(rows: Rows) -> None:
    for k in range(4):
        rows.group.write([k])
        assert rows.stored() == list(range(k + 1))  # committed when write() returned
    assert rows.queued == 4


def test_a_write_that_cannot_be_queued_leaves_no_group_open(rows: Rows) -> None:
    real = rows._enqueue
    calls = iter([RuntimeError("the writer is closed"), None])

    def enqueue_once_failing(fn: Any) -> Future[None]:
        error = next(calls)
        if error is not None:
            raise error
        return real(fn)

    rows.group._enqueue = enqueue_once_failing
    with pytest.raises(RuntimeError, match="closed"):
        rows.group.write([1])
    assert rows.waiting_parts() == 0
    rows.group.write([2])
    assert rows.stored() == [2]


def test_store_image_updates_from_many_threads_all_land(tmp_path: Any) -> None:
    """Through the store: jobs finishing at once on several threads, each update returns with its
    images stored done, whether or not it shared a write."""
    store = PreferenceStore.open(tmp_path / "dg.duckdb")
    try:
        batch_id = "b1"
        image_ids = add_simple_batch(store, batch_id, ["ckA", "ckB"] * 6, statuses=["queued"] * 12)
        jobs = [image_ids[k:k + 2] for k in range(0, 12, 2)]
        seen: dict[str, str] = {}

        def finish(job: list[str]) -> None:
            store.update_images([ImageStatus(i, "done", "gpu0", f"/x/{i}.png", seconds=1.0) for i in job])
            for i in job:  # visible to a read as soon as the call returned
                seen[i] = store.get_image(i, None).status  # type: ignore[union-attr]

        threads = [threading.Thread(target=finish, args=(job,)) for job in jobs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert seen == {i: "done" for i in image_ids}
        finished = store.read_sql("SELECT count(DISTINCT finished_seq) AS n FROM images WHERE batch_id = ?",
                                  [batch_id])
        assert int(finished["n"].iloc[0]) == 12
    finally:
        store.close()
