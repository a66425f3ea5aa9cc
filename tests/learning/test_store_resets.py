"""Resets of what was learnt and their undos: what they remove, what later clicks do, what comes
back, and that they survive a restart, an export and an import (the random histories with resets
are in test_store_agreement.py)."""

from __future__ import annotations

import pytest

from learning.store.preference_store import PreferenceStore, UnknownResetError
from tests.learning.store_builders import add_simple_batch, counts, table_rows


def reviewed_batch(store: PreferenceStore, batch_id: str = "b1", **fields: object) -> list[str]:
    """ckA and ckB under (cat, portrait); ckA selected."""
    ids = add_simple_batch(store, batch_id, ["ckA", "ckB"], **fields)
    store.apply_feedback("alice", batch_id, "select", [ids[0]])
    return ids


def test_a_keyword_reset_forgets_that_keyword_only(store: PreferenceStore) -> None:
    reviewed_batch(store)
    result = store.reset_preferences("alice", "cat")
    assert result.changed and result.reset_id is not None and result.rows == 6  # under cat: ckA, ckB, their CFG arms, the LoRA set sd15|none, the term blurry
    assert counts(store, "alice", "cat", "ckA") == (0, 0, 0)
    assert counts(store, "alice", "portrait", "ckA") == (1, 1, 0)
    assert store.arm_totals("alice", "checkpoint")["ckA"]["selected"] == 1  # '*' totals stay
    assert store.arm_stats("alice", "checkpoint", ["cat"]) == {}
    assert store.aggregates_equal_rebuild()


def test_resetting_everything_clears_every_row_but_not_the_review_count(store: PreferenceStore) -> None:
    reviewed_batch(store)
    add_simple_batch(store, "bob1", ["ckA"], user_id="bob")
    store.apply_feedback("bob", "bob1", "select", ["bob1-0"])
    result = store.reset_preferences("alice", None)
    assert result.keyword is None and result.rows == 18  # those 6 arms under cat, portrait and '*'
    assert store.arm_totals("alice", "checkpoint") == {}
    assert store.arm_totals("bob", "checkpoint")["ckA"]["total"] == 1  # another user's stay
    assert store.total_reviews("alice") == 1  # the decay clock goes on
    assert store.aggregates_equal_rebuild()


def test_a_reset_of_nothing_records_nothing(store: PreferenceStore) -> None:
    reviewed_batch(store)
    result = store.reset_preferences("alice", "nowhere")
    assert (result.reset_id, result.changed, result.rows) == (None, False, 0)
    assert table_rows(store, "resets") == 0
    store.reset_preferences("alice", "cat")
    assert not store.reset_preferences("alice", "cat").changed  # a repeat finds nothing left
    assert table_rows(store, "resets") == 1


@pytest.mark.parametrize("keyword", ["*", "", "  "])
def test_a_reset_refuses_the_reserved_and_empty_keywords(store: PreferenceStore, keyword: str) -> None:
    reviewed_batch(store)
    with pytest.raises(ValueError, match="keyword"):
        store.reset_preferences("alice", keyword)
    assert table_rows(store, "resets") == 0


def test_clicks_on_an_older_batch_after_a_reset_stay_out_until_the_undo(store: PreferenceStore) -> None:
    ids = reviewed_batch(store)
    reset = store.reset_preferences("alice", "cat")
    store.apply_feedback("alice", "b1", "select", [ids[1]])  # the batch counted before the reset
    assert counts(store, "alice", "cat", "ckB") == (0, 0, 0)
    assert counts(store, "alice", "portrait", "ckB") == (1, 1, 0)
    new = add_simple_batch(store, "b2", ["ckB"])  # a batch after the reset counts as usual
    store.apply_feedback("alice", "b2", "select", new)
    assert counts(store, "alice", "cat", "ckB") == (1, 1, 0)
    assert store.aggregates_equal_rebuild()

    undone = store.undo_reset("alice", reset.reset_id)
    assert undone.changed and undone.undone and undone.keyword == "cat"
    assert counts(store, "alice", "cat", "ckA") == (1, 1, 0)
    assert counts(store, "alice", "cat", "ckB") == (2, 2, 0)  # the click made meanwhile included
    assert store.aggregates_equal_rebuild()
    again = store.undo_reset("alice", reset.reset_id)
    assert not again.changed and again.undone
    assert table_rows(store, "reset_undos") == 1


def test_an_undo_leaves_what_another_active_reset_hides(store: PreferenceStore) -> None:
    reviewed_batch(store)
    first = store.reset_preferences("alice", "cat")
    reviewed_batch(store, "b2")
    everything = store.reset_preferences("alice", None)
    store.undo_reset("alice", first.reset_id)
    assert store.arm_totals("alice", "checkpoint") == {}  # the later reset of everything still holds
    store.undo_reset("alice", everything.reset_id)
    assert counts(store, "alice", "cat", "ckA") == (2, 2, 0)
    assert store.aggregates_equal_rebuild()


def test_another_users_reset_is_unknown(store: PreferenceStore) -> None:
    reviewed_batch(store)
    reset = store.reset_preferences("alice", "cat")
    with pytest.raises(UnknownResetError):
        store.undo_reset("bob", reset.reset_id)
    with pytest.raises(UnknownResetError):
        store.undo_reset("alice", 987654)
    assert counts(store, "alice", "cat", "ckA") == (0, 0, 0)
    assert [r.reset_id for r in store.resets("alice")] == [reset.reset_id]
    assert store.resets("bob") == []


def test_resets_survive_a_restart(tmp_path) -> None:
    path = tmp_path / "p.duckdb"
    with PreferenceStore.open(path) as store:
        ids = reviewed_batch(store)
        reset = store.reset_preferences("alice", None)
    with PreferenceStore.open(path) as store:  # the active resets are loaded with the aggregates
        store.apply_feedback("alice", "b1", "select", [ids[1]])
        assert store.arm_totals("alice", "checkpoint") == {}
        assert store.aggregates_equal_rebuild()
        store.undo_reset("alice", reset.reset_id)
        assert store.arm_totals("alice", "checkpoint")["ckB"]["selected"] == 1
        assert store.aggregates_equal_rebuild()
        listed = store.resets("alice")
        assert listed[0].reset_id == reset.reset_id and listed[0].undone_at is not None


def test_exports_and_imports_follow_the_resets(store: PreferenceStore) -> None:
    reviewed_batch(store)
    store.reset_preferences("alice", "cat")
    exported = store.export_preferences("alice", "csv").decode()
    assert ",cat," not in exported and "portrait" in exported  # an export holds what still counts
    store.import_preferences("bob", exported.encode(), "csv")
    assert counts(store, "bob", "cat", "ckA") == (0, 0, 0)
    reset = store.reset_preferences("alice", None)
    store.import_preferences("alice", exported.encode(), "csv")  # an import after a reset counts
    assert counts(store, "alice", "portrait", "ckA") == (1, 1, 0)
    bobs = store.reset_preferences("bob", "portrait")  # a reset hides imported rows too
    assert counts(store, "bob", "portrait", "ckA") == (0, 0, 0)
    assert store.aggregates_equal_rebuild()
    store.undo_reset("bob", bobs.reset_id)
    store.undo_reset("alice", reset.reset_id)
    assert counts(store, "bob", "portrait", "ckA") == (1, 1, 0)
    assert counts(store, "alice", "portrait", "ckA") == (2, 2, 0)
    assert store.aggregates_equal_rebuild()
    store.rebuild_aggregates()
    assert counts(store, "alice", "portrait", "ckA") == (2, 2, 0)


def test_a_reset_forgets_the_recent_counts_of_the_change_test(store: PreferenceStore) -> None:
    reviewed_batch(store)
    assert store._aggregates.taste_changes._recent  # the review fed the recent counts
    store.reset_preferences("alice", None)
    assert not store._aggregates.taste_changes._recent
