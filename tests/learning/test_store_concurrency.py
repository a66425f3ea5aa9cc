"""Many threads writing and reading at once: no lost update, no conflict, reads never block."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from learning.store.preference_store import PreferenceStore
from learning.store.writer import WriterClosedError
from tests.learning.store_builders import add_simple_batch, counts


def test_parallel_reviews_lose_no_update(tmp_path: Path) -> None:
    store = PreferenceStore.open(tmp_path / "p.duckdb")
    try:
        def review(n: int) -> None:
            ids = add_simple_batch(store, f"b{n}", ["ckA", "ckB"], user_id=f"u{n % 3}")
            store.apply_feedback(f"u{n % 3}", f"b{n}", "select", [ids[0]])
            store.apply_feedback(f"u{n % 3}", f"b{n}", "reject", [ids[1]])
            store.arm_stats(f"u{n % 3}", "checkpoint", ["cat"])

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(review, range(40)))
        assert counts(store, None, "*", "ckA") == (40, 40, 0)
        assert counts(store, None, "*", "ckB") == (40, 0, 40)
        assert store.total_reviews(None) == 40
        assert store.aggregates_equal_rebuild()
    finally:
        store.close()


def test_writes_after_close_are_refused() -> None:
    store = PreferenceStore.open(":memory:")
    store.close()
    with pytest.raises(WriterClosedError):
        store.rebuild_aggregates()


def test_urgent_writes_jump_the_queue_and_stop_waits_for_everything() -> None:
    """A click queued behind bookkeeping runs first, then a new batch; close() still finishes every queued write."""
    import threading

    import duckdb

    from learning.store.writer import BACKGROUND, NORMAL, PROMPT, URGENT, SerialWriter

    con = duckdb.connect(":memory:")
    con.execute("CREATE TABLE log (what VARCHAR)")
    writer = SerialWriter(con)
    gate = threading.Event()
    blocker = writer.enqueue(lambda cur: gate.wait(5))  # holds the writer while the queue fills
    futures = [writer.enqueue(lambda cur, w=w: cur.execute("INSERT INTO log VALUES (?)", [w]), priority=p)
               for w, p in (("compaction", BACKGROUND), ("image", NORMAL), ("batch", PROMPT), ("click", URGENT))]
    gate.set()
    for f in [blocker, *futures]:
        f.result(timeout=5)
    writer.close()
    assert [r[0] for r in con.execute("SELECT what FROM log").fetchall()] == ["click", "batch", "image", "compaction"]
