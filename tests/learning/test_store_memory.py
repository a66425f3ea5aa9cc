"""The in-memory copies: the aggregates the evidence reads use, and the writer's recent batches.
Both must always equal what the database holds (the hypothesis tests in test_store_agreement.py
check the aggregates after random histories; these tests cover reopening and rollbacks)."""

from __future__ import annotations

from pathlib import Path

import pytest

from learning.models import ImageStatus
from learning.store.recent_batches import RecentBatches
from learning.store.preference_store import PreferenceStore
from learning.store.fact_reads import BatchFacts
from tests.learning.store_builders import (
    add_simple_batch,
    fail_after_aggregate_changes,
    assert_memory_equals_sql,
    evidence_snapshot,
)

USERS = ("alice", "bob", None)
KEYWORDS = ("cat", "portrait", "sea", "*")
ARMS = ("ckA", "detail")


def _history(store: PreferenceStore) -> None:
    """Reviews over two users with decay, a late image, a Reject all, an import, a compaction."""
    a = add_simple_batch(store, "a1", ["ckA", "ckB", "ckA"], statuses=["done", "done", "queued"],
                         loras=(("detail", 0.6),))
    store.apply_feedback("alice", "a1", "select", [a[0]])
    store.update_images([ImageStatus(a[2], "done")])
    store.compact_aggregates()
    for n in range(3):
        ids = add_simple_batch(store, f"a{n + 2}", ["ckB", "ckC"], keywords=("sea",))
        store.apply_feedback("alice", f"a{n + 2}", "reject_all")
        store.apply_feedback("alice", f"a{n + 2}", "select", [ids[n % 2]])
    b = add_simple_batch(store, "b1", ["ckA"], user_id="bob")
    store.apply_feedback("bob", "b1", "viewed")
    store.import_preferences("bob", store.export_preferences("alice", "csv"), "csv")
    store.apply_feedback("bob", "b1", "select", b)


def test_reopened_store_reads_what_it_read_before_closing(tmp_path: Path) -> None:
    path = tmp_path / "p.duckdb"
    store = PreferenceStore.open(path, half_life=2.0)
    _history(store)
    before = evidence_snapshot(store, USERS, KEYWORDS, ARMS)
    store.close()
    for read_only in (True, False):
        reopened = PreferenceStore.open(path, half_life=2.0, read_only=read_only)
        try:
            after = evidence_snapshot(reopened, USERS, KEYWORDS, ARMS)
            assert after == pytest.approx(before, rel=1e-9, abs=1e-12)
            assert reopened.aggregates_equal_rebuild()
        finally:
            reopened.close()
    store = PreferenceStore.open(path, half_life=2.0)
    try:  # the writer no longer remembers these batches: it reads them back from the file
        store.apply_feedback("alice", "a1", "reject", ["a1-1"])
        store.apply_feedback("alice", "a2", "unselect", ["a2-0"])
        assert store.batch_snapshot("a1").facts.states() == {"a1-0": "selected", "a1-1": "rejected",
                                            "a1-2": "none"}
        assert_memory_equals_sql(store, USERS, KEYWORDS, ARMS)
        assert store.aggregates_equal_rebuild()
    finally:
        store.close()


def test_a_rolled_back_write_changes_neither_copy(
    store: PreferenceStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = add_simple_batch(store, "b1", ["ckA", "ckB"])
    store.apply_feedback("alice", "b1", "select", [ids[0]])
    before = evidence_snapshot(store, USERS, KEYWORDS, ARMS)
    fail_after_aggregate_changes(monkeypatch)
    with pytest.raises(RuntimeError, match="disk full"):
        store.apply_feedback("alice", "b1", "select", [ids[1]])
    monkeypatch.undo()
    assert evidence_snapshot(store, USERS, KEYWORDS, ARMS) == before
    assert store.batch_snapshot("b1").facts.states() == {ids[0]: "selected", ids[1]: "none"}
    result = store.apply_feedback("alice", "b1", "select", [ids[1]])
    assert result.changed and result.selected == {ids[0], ids[1]}
    assert store.arm_totals("alice", "checkpoint")["ckB"] == {
        "selected": 1, "total": 1, "selection_rate": 1.0}
    assert store.aggregates_equal_rebuild()


def test_rebuild_reloads_the_memory_from_the_tables(store: PreferenceStore) -> None:
    ids = add_simple_batch(store, "b1", ["ckA", "ckB"])
    store.apply_feedback("alice", "b1", "select", [ids[0]])
    # Simulate a change behind the writer's back (test only): the copy no longer matches...
    store.read_sql("DELETE FROM preference_stats_pending WHERE arm = 'ckB'")
    assert not store.aggregates_equal_rebuild()
    store.rebuild_aggregates()  # ...until the rebuild recomputes the tables and reloads it
    assert store.aggregates_equal_rebuild()
    assert set(store.arm_totals("alice", "checkpoint")) == {"ckA", "ckB"}


def _facts(batch_id: str) -> BatchFacts:
    return BatchFacts(batch_id=batch_id, user_id="alice", keywords=("cat",), reviewed=False,
                      images=(), feedback=())


def test_recent_batches_keep_only_committed_batches_and_forget_the_least_used() -> None:
    memory = RecentBatches(capacity=2)
    for batch_id in ("b1", "b2"):
        changes = memory.changes()
        changes.put(_facts(batch_id))
        assert memory.get(batch_id) is None  # not committed yet
        memory.apply(changes)
    reading = memory.changes()
    assert reading.load(None, "b1") == _facts("b1")  # type: ignore[arg-type] - no DB needed
    third = memory.changes()
    third.put(_facts("b3"))
    memory.apply(third)
    assert memory.get("b1") == _facts("b1") and memory.get("b3") == _facts("b3")
    assert memory.get("b2") is None  # the least recently used one went
