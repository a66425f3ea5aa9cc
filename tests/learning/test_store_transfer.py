"""Export/import of preference rows: round trips, merging, and refusing bad files whole."""

from __future__ import annotations

import pytest

from learning.store.preference_store import PreferenceStore
from tests.learning.store_builders import (
    add_simple_batch,
    counts,
    select_then_move_on,
    table_rows,
)

HEADER = "keyword,arm_kind,arm,shown,selected,rejected,w_shown,w_selected,w_rejected\n"


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_then_import_adds_the_counts(store: PreferenceStore, fmt: str) -> None:
    ids = add_simple_batch(store, "b1", ["ckA", "ckB"], loras=(("detail", 0.6),))
    store.apply_feedback("alice", "b1", "select", [ids[0]])
    data = store.export_preferences("alice", fmt)
    assert store.import_preferences("bob", data, fmt) == 21  # (cat, portrait, *) x (2 ck + lora + its set + 2 ck@CFG + blurry)
    assert store.arm_totals("bob", "checkpoint") == store.arm_totals("alice", "checkpoint")
    store.import_preferences("bob", data, fmt)
    assert counts(store, "bob", "cat", "ckA") == (2, 2, 0)
    assert store.arm_stats("bob", "lora", ["*"])[("*", "detail")].shown == pytest.approx(4.0)
    assert store.aggregates_equal_rebuild()  # imports are facts: a rebuild keeps them


@pytest.mark.parametrize(("body", "message"), [
    ("keyword,arm\ncat,ckA\n", "lacks the column"),
    (HEADER + "cat,checkpoint,ckA,2,3,0,2,3,0\n", "row 1 of the file: selected and rejected"),
    (HEADER + "cat,checkpoint,ckA,2,1,0,2,1,0\ncat,model,ckB,1,0,0,1,0,0\n",
     "row 2 of the file: arm_kind"),
    (HEADER + "cat,checkpoint,ckA,two,1,0,2,1,0\n", "whole numbers"),
    (HEADER + "cat,checkpoint,ckA,2,1,0,inf,1,0\n", "finite"),
    (HEADER + "cat,checkpoint,ckA,2,1,0,2,1,0\ncat,checkpoint,ckA,1,0,0,1,0,0\n", "twice"),
    (HEADER + ",checkpoint,ckA,2,1,0,2,1,0\n", "keyword is empty"),
])
def test_bad_csv_is_refused_with_a_reason_and_nothing_written(
    store: PreferenceStore, body: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        store.import_preferences("bob", body.encode(), "csv")
    assert table_rows(store, "imported_stats") == 0
    assert table_rows(store, "preference_stats_now(1.0)") == 0


def test_garbage_and_wrong_format_are_refused(store: PreferenceStore) -> None:
    with pytest.raises(ValueError, match="not a readable parquet"):
        store.import_preferences("bob", b"\x00\x01 definitely not parquet", "parquet")
    with pytest.raises(ValueError, match="empty"):
        store.import_preferences("bob", b"", "csv")
    with pytest.raises(ValueError, match="format"):
        store.export_preferences("alice", "xlsx")  # type: ignore[arg-type]
    assert table_rows(store, "imported_stats") == 0


def test_an_undone_selection_exports_and_imports_back() -> None:
    """Unselecting reviews later subtracts a whole 1 from a decayed one: the export holds a
    negative w_selected, which the import must take back."""
    store = PreferenceStore.open(":memory:", half_life=1.0)
    try:
        ids = select_then_move_on(store, later_reviews=2)
        store.apply_feedback("alice", "b0", "unselect", ids)
        assert store.arm_stats("alice", "checkpoint", ["*"])[("*", "ckA")].selected < 0
        assert store.import_preferences("bob", store.export_preferences("alice", "csv"),
                                        "csv") == 18  # (cat, portrait, *) x (2 ck, sd15|none, 2 ck@CFG, blurry)
        assert store.arm_totals("bob", "checkpoint") == store.arm_totals("alice", "checkpoint")
        assert store.aggregates_equal_rebuild()
    finally:
        store.close()
