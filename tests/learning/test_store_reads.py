"""Reads the app shows: batches, images, lineage, stats tables, generation logs."""

from __future__ import annotations

import pytest

from learning.store.preference_store import PreferenceStore
from tests.learning.store_builders import (
    add_simple_batch,
    make_batch,
    make_image,
)


def test_batches_and_images_are_private_to_their_user(store: PreferenceStore) -> None:
    ids = add_simple_batch(store, "b1", ["ckA"], loras=(("detail", 0.6),))
    assert store.get_batch("b1", "bob") is None
    assert store.get_batch("b1", None).user_id == "alice"
    assert store.get_image(ids[0], "bob") is None
    image = store.get_image(ids[0], "alice")
    assert image.loras == (("detail", 0.6),)
    assert [i.image_id for i in store.batch_snapshot("b1").images] == ids
    assert store.get_batch("missing", None) is None
    assert store.batch_snapshot("missing") is None


def test_lineage_runs_from_first_draft_to_the_refined_image(store: PreferenceStore) -> None:
    draft = make_batch("draft")
    store.add_batch(draft, [make_image(draft, 0)])
    standard = make_batch("standard")
    store.add_batch(standard, [make_image(standard, 0, parent_image_id="draft-0")])
    quality = make_batch("quality")
    store.add_batch(quality, [make_image(quality, 0, parent_image_id="standard-0")])
    assert [i.image_id for i in store.lineage("quality-0")] == ["draft-0", "standard-0",
                                                                 "quality-0"]
    assert [i.image_id for i in store.lineage("draft-0")] == ["draft-0"]


def test_arm_stats_filters_keywords_arms_and_users(store: PreferenceStore) -> None:
    a = add_simple_batch(store, "a1", ["ckA", "ckB"], keywords=("cat",))
    b = add_simple_batch(store, "b1", ["ckA", "ckC"], keywords=("cat", "sea"), user_id="bob")
    store.apply_feedback("alice", "a1", "select", [a[0]])
    store.apply_feedback("bob", "b1", "select", [b[0], b[1]])
    mine = store.arm_stats("alice", "checkpoint", ["cat", "sea"])
    assert set(mine) == {("cat", "ckA"), ("cat", "ckB")}
    assert mine[("cat", "ckA")].selected == pytest.approx(1.0)
    both = store.arm_stats(None, "checkpoint", ["cat"], arms=["ckA"])
    assert set(both) == {("cat", "ckA")}
    assert (both[("cat", "ckA")].shown, both[("cat", "ckA")].selected) == pytest.approx((2, 2))
    assert store.arm_stats("alice", "checkpoint", []) == {}
    assert store.base_rate("alice", "checkpoint").shown == pytest.approx(2.0)
    assert store.base_rate(None, "checkpoint").selected == pytest.approx(3.0)
    assert store.total_reviews(None) == 2


def test_arm_totals_and_keyword_table_use_plain_counts(store: PreferenceStore) -> None:
    ids = add_simple_batch(store, "b1", ["ckA", "ckA", "ckB"], keywords=("castle", "sea"))
    store.apply_feedback("alice", "b1", "select", [ids[0]])
    assert store.arm_totals("alice", "checkpoint") == {
        "ckA": {"selected": 1, "total": 2, "selection_rate": 0.5},
        "ckB": {"selected": 0, "total": 1, "selection_rate": 0.0},
    }
    table = store.keyword_table("alice", "checkpoint", keyword_filter="CAST")
    assert table.to_dict("records") == [
        {"keyword": "castle", "arm": "ckA", "selected": 1, "total": 2, "selection_rate": 0.5},
        {"keyword": "castle", "arm": "ckB", "selected": 0, "total": 1, "selection_rate": 0.0},
    ]
    assert set(store.keyword_table(None)["keyword"]) == {"castle", "sea"}


def test_generation_logs_answer_average_confidence_per_session(store: PreferenceStore) -> None:
    add_simple_batch(store, "b1", ["ckA"], confidence=0.2, session_id="s1")
    ids = add_simple_batch(store, "b2", ["ckA", "ckB"], confidence=0.6, session_id="s1")
    add_simple_batch(store, "b3", ["ckA"], confidence=0.9, session_id="s2")
    store.apply_feedback("alice", "b2", "select", [ids[1]])
    result = store.read_sql(
        "SELECT session_id, avg(confidence) AS avg_confidence FROM generation_logs "
        "GROUP BY session_id ORDER BY session_id")
    assert result["session_id"].tolist() == ["s1", "s2"]
    assert result["avg_confidence"].tolist() == pytest.approx([0.4, 0.9])
    row = store.read_sql("SELECT images_done, images_selected FROM generation_logs "
                         "WHERE batch_id = 'b2'").iloc[0]
    assert (row.images_done, row.images_selected) == (2, 1)


def test_recent_batches_and_confidence_history(store: PreferenceStore) -> None:
    for n in range(3):
        add_simple_batch(store, f"b{n}", ["ckA"], confidence=n / 10, strategy="explore")
    add_simple_batch(store, "bob1", ["ckA"], user_id="bob")
    assert [b.batch_id for b in store.recent_batches("alice", limit=2)] == ["b2", "b1"]
    history = store.confidence_history("alice")
    assert history["batch_id"].tolist() == ["b0", "b1", "b2"]
    assert history["confidence"].tolist() == pytest.approx([0.0, 0.1, 0.2])
    assert len(store.confidence_history(None)) == 4
