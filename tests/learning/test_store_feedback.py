"""The counting rules: reviews, transitions, idempotence, late images, keyword/arm expansion;
a review request of several steps as one transaction (`apply_review`)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from learning.models import FeedbackResult, ImageStatus
from learning.store.counting_write_path import FAVOURITE_WEIGHT
from learning.store.errors import ImageNotDoneError
from learning.store.preference_store import PreferenceStore, UnknownBatchError, UnknownImageError
from learning.store.writer import SerialWriter
from tests.learning.store_builders import (
    add_simple_batch,
    fail_after_aggregate_changes,
    counts,
    evidence_snapshot,
    make_batch,
    make_image,
    select_then_move_on,
    table_rows,
)


def test_unreviewed_batch_counts_nothing(store: PreferenceStore) -> None:
    add_simple_batch(store, "b1", ["ckA", "ckB"])
    assert counts(store, "alice", "*", "ckA") == (0, 0, 0)
    assert store.total_reviews("alice") == 0
    assert store.get_batch("b1", "alice").reviewed_at is None


def test_first_select_reviews_the_batch_and_counts_every_done_image(store: PreferenceStore) -> None:
    ids = add_simple_batch(store, "b1", ["ckA", "ckA", "ckB", "ckB"],
                           statuses=["done", "done", "done", "queued"])
    result = store.apply_feedback("alice", "b1", "select", [ids[0]])
    assert result.reviewed and result.changed
    assert result.selected == {ids[0]}
    assert counts(store, "alice", "cat", "ckA") == (2, 1, 0)
    assert counts(store, "alice", "*", "ckB") == (1, 0, 0)  # the queued image does not count yet
    assert store.total_reviews("alice") == 1
    assert store.get_batch("b1", "alice").reviewed_at is not None


def test_select_then_unselect_and_repeats_apply_only_transitions(store: PreferenceStore) -> None:
    ids = add_simple_batch(store, "b1", ["ckA", "ckB"])
    store.apply_feedback("alice", "b1", "select", [ids[0]])
    repeat = store.apply_feedback("alice", "b1", "select", [ids[0]])
    assert not repeat.changed
    assert counts(store, "alice", "portrait", "ckA") == (1, 1, 0)
    store.apply_feedback("alice", "b1", "unselect", [ids[0]])
    store.apply_feedback("alice", "b1", "unselect", [ids[0]])
    assert counts(store, "alice", "portrait", "ckA") == (1, 0, 0)
    assert store.total_reviews("alice") == 1
    assert store.batch_snapshot("b1").facts.states() == {ids[0]: "none", ids[1]: "none"}


def test_unselect_alone_does_not_review(store: PreferenceStore) -> None:
    ids = add_simple_batch(store, "b1", ["ckA"])
    result = store.apply_feedback("alice", "b1", "unselect", [ids[0]])
    assert not result.reviewed and not result.changed
    assert store.total_reviews("alice") == 0


def test_reject_all_rejects_done_unselected_images_only(store: PreferenceStore) -> None:
    ids = add_simple_batch(store, "b1", ["ckA", "ckA", "ckB", "ckB"],
                           statuses=["done", "done", "done", "running"])
    store.apply_feedback("alice", "b1", "select", [ids[0]])
    result = store.apply_feedback("alice", "b1", "reject_all")
    assert result.selected == {ids[0]}
    assert result.rejected == {ids[1], ids[2]}
    assert counts(store, "alice", "*", "ckA") == (2, 1, 1)
    assert counts(store, "alice", "*", "ckB") == (1, 0, 1)
    again = store.apply_feedback("alice", "b1", "reject_all")
    assert not again.changed
    assert counts(store, "alice", "*", "ckA") == (2, 1, 1)


def test_selecting_a_rejected_image_unrejects_it(store: PreferenceStore) -> None:
    ids = add_simple_batch(store, "b1", ["ckA", "ckB"])
    store.apply_feedback("alice", "b1", "reject_all")
    assert counts(store, "alice", "*", "ckB") == (1, 0, 1)
    store.apply_feedback("alice", "b1", "select", [ids[1]])
    assert counts(store, "alice", "*", "ckB") == (1, 1, 0)
    store.apply_feedback("alice", "b1", "reject", [ids[1]])
    assert counts(store, "alice", "*", "ckB") == (1, 0, 1)


def test_late_image_counts_once_when_it_finishes(store: PreferenceStore) -> None:
    ids = add_simple_batch(store, "b1", ["ckA", "ckB"], statuses=["done", "queued"])
    store.apply_feedback("alice", "b1", "viewed")
    assert counts(store, "alice", "*", "ckB") == (0, 0, 0)
    store.update_images([ImageStatus(ids[1], "running", server="gpu0")])
    store.update_images([ImageStatus(ids[1], "done", "gpu0", "/img/b1-1.png", seconds=1.5)])
    first = store.read_sql("SELECT finished_at, finished_seq FROM images WHERE image_id = ?", [ids[1]]).iloc[0]
    store.update_images([ImageStatus(ids[1], "done", path="/img/b1-1.png")])
    again = store.read_sql("SELECT finished_at, finished_seq FROM images WHERE image_id = ?", [ids[1]]).iloc[0]
    assert list(again) == list(first)  # a repeated finish keeps the first one's time and place
    assert counts(store, "alice", "*", "ckB") == (1, 0, 0)
    image = store.get_image(ids[1], "alice")
    assert (image.status, image.server, image.path, image.seconds) == (
        "done", "gpu0", "/img/b1-1.png", 1.5)
    assert store.aggregates_equal_rebuild()


def test_image_that_finishes_after_reject_all_is_not_rejected(store: PreferenceStore) -> None:
    ids = add_simple_batch(store, "b1", ["ckA", "ckB"], statuses=["done", "queued"])
    store.apply_feedback("alice", "b1", "reject_all")
    store.update_images([ImageStatus(ids[1], "done")])
    assert store.batch_snapshot("b1").facts.states() == {ids[0]: "rejected", ids[1]: "none"}
    assert counts(store, "alice", "*", "ckB") == (1, 0, 0)


def test_done_image_cannot_go_back(store: PreferenceStore) -> None:
    ids = add_simple_batch(store, "b1", ["ckA"])
    with pytest.raises(ValueError, match="cannot change"):
        store.update_images([ImageStatus(ids[0], "failed", error="late error")])
    assert store.get_image(ids[0], None).status == "done"
    with pytest.raises(UnknownImageError):
        store.update_images([ImageStatus("nope", "done")])


def test_each_keyword_star_and_every_arm_kind_counted(store: PreferenceStore) -> None:
    ids = add_simple_batch(store, "b1", ["ckA"], loras=(("detail", 0.6), ("film", 0.7)),
                           keywords=("cat", "hat"))
    store.apply_feedback("alice", "b1", "select", ids)
    for keyword in ("cat", "hat", "*"):
        assert counts(store, "alice", keyword, "ckA") == (1, 1, 0)
        assert counts(store, "alice", keyword, "detail", "lora") == (1, 1, 0)
        assert counts(store, "alice", keyword, "film", "lora") == (1, 1, 0)
        assert counts(store, "alice", keyword, "sd15|detail@0.60+film@0.70", "lora-combination") == (1, 1, 0)
        assert counts(store, "alice", keyword, "ckA@5.0", "cfg") == (1, 1, 0)
        assert counts(store, "alice", keyword, "blurry", "negative-term") == (1, 1, 0)
    assert table_rows(store, "preference_stats_now(1.0)") == 18  # 6 arms × (cat, hat, '*')


def test_a_new_batch_reviews_earlier_finished_batches_of_the_session(store: PreferenceStore) -> None:
    add_simple_batch(store, "old", ["ckA"])
    add_simple_batch(store, "running", ["ckA"], statuses=["running"])
    add_simple_batch(store, "other-session", ["ckA"], session_id="s2")
    new = make_batch("new", count=1)
    assert store.add_batch(new, [make_image(new, 0, checkpoint="ckB")], moved_on=True) == ["old"]
    newer = make_batch("newer", count=1)
    assert store.add_batch(newer, [make_image(newer, 0, checkpoint="ckB")]) == []  # not moved on: "new" stays
    assert store.read_sql("SELECT reviewed_at FROM batches WHERE batch_id = 'new'")["reviewed_at"].isna().all()
    assert counts(store, "alice", "*", "ckA") == (1, 0, 0)
    assert counts(store, "alice", "*", "ckB") == (0, 0, 0)
    assert store.total_reviews("alice") == 1


def test_rejected_requests_write_nothing(store: PreferenceStore) -> None:
    ids = add_simple_batch(store, "b1", ["ckA"])
    add_simple_batch(store, "bob-batch", ["ckA"], user_id="bob")
    with pytest.raises(UnknownBatchError):
        store.apply_feedback("alice", "bob-batch", "select", ["bob-batch-0"])
    with pytest.raises(UnknownBatchError):
        store.apply_feedback("alice", "missing", "reject_all")
    with pytest.raises(UnknownImageError):
        store.apply_feedback("alice", "b1", "select", [ids[0], "bob-batch-0"])
    with pytest.raises(ValueError):
        store.apply_feedback("alice", "b1", "select", [])
    with pytest.raises(ValueError):
        store.apply_feedback("alice", "b1", "reject_all", ids)
    assert table_rows(store, "feedback") == 0
    assert store.total_reviews(None) == 0
    assert store.batch_snapshot("b1").facts.states() == {ids[0]: "none"}


def test_failed_add_batch_leaves_nothing_behind(store: PreferenceStore) -> None:
    add_simple_batch(store, "b1", ["ckA"])
    with pytest.raises(ValueError, match="repeats a stored id"):
        add_simple_batch(store, "b1", ["ckB"])
    batch = make_batch("b2")
    twins = [make_image(batch, 0), make_image(batch, 0)]
    with pytest.raises(ValueError, match="repeats a stored id"):
        store.add_batch(batch, twins)
    with pytest.raises(ValueError, match="reserved"):
        add_simple_batch(store, "b3", ["ckA"], keywords=("*",))
    assert table_rows(store, "batches") == 1
    assert table_rows(store, "images") == 1


def test_decayed_counts_halve_after_half_life_reviews() -> None:
    store = PreferenceStore.open(":memory:", half_life=2.0)
    try:
        select_then_move_on(store, later_reviews=2)
        stats = store.arm_stats("alice", "checkpoint", ["cat"])
        assert stats[("cat", "ckA")].shown == pytest.approx(0.5)
        assert stats[("cat", "ckA")].selected == pytest.approx(0.5)
        assert stats[("cat", "ckB")].shown == pytest.approx(2 ** -0.5 + 1.0)
        assert counts(store, "alice", "cat", "ckA") == (1, 1, 0)  # plain counts never decay
        assert store.aggregates_equal_rebuild()
    finally:
        store.close()


def test_update_images_records_a_whole_job_in_one_write(store: PreferenceStore) -> None:
    """A finished job's images land together; a later failure can't move a done image back."""
    ids = add_simple_batch(store, "b1", ["ckA", "ckA", "ckB"], statuses=["queued"] * 3)
    store.update_images([ImageStatus(ids[0], "done", "gpu-0", "/x/0.png", seconds=1.5),
                         ImageStatus(ids[1], "done", "gpu-0", "/x/1.png", seconds=1.5),
                         ImageStatus(ids[2], "failed", error="boom")])
    by_id = {r.image_id: r for r in store.batch_snapshot("b1").images}
    assert [by_id[i].status for i in ids] == ["done", "done", "failed"]
    assert by_id[ids[0]].server == "gpu-0" and by_id[ids[2]].error == "boom"
    with pytest.raises(ValueError):
        store.update_images([ImageStatus(ids[1], "failed", error="late")])
    assert by_id[ids[1]].status == "done" and store.aggregates_equal_rebuild()


def test_update_images_checks_every_step_before_writing(store: PreferenceStore) -> None:
    """One bad step (unknown id, repeated id, unknown status) refuses the whole update."""
    ids = add_simple_batch(store, "b1", ["ckA", "ckA"], statuses=["queued"] * 2)
    for bad in ([ImageStatus(ids[0], "done", path="/x/0.png"), ImageStatus("nope", "done")],
                [ImageStatus(ids[0], "running"), ImageStatus(ids[0], "done")],
                [ImageStatus(ids[0], "done"), ImageStatus(ids[1], "exploded")]):
        with pytest.raises((ValueError, UnknownImageError)):
            store.update_images(bad)
    assert [r.status for r in store.batch_snapshot("b1").images] == ["queued", "queued"]
    store.update_images([ImageStatus(ids[1], "done"), ImageStatus(ids[0], "done")])
    seqs = store.read_sql("SELECT finished_seq FROM images WHERE batch_id = 'b1'")["finished_seq"]
    assert seqs.notna().all() and seqs.nunique() == 2 and store.aggregates_equal_rebuild()


# --- apply_review: one review request, one transaction ------------------------------------------

REVIEW = [("select", ["b1-0", "b1-1"]), ("reject", ["b1-2"]), ("unselect", ["b1-1"]),
          ("reject_all", [])]


def _count_transactions(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every write the store's writer runs (one transaction each) appends to the list."""
    runs: list[object] = []
    real_execute = SerialWriter._execute

    def counted(self: SerialWriter, *args: object) -> None:
        runs.append(args[0])
        real_execute(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(SerialWriter, "_execute", counted)
    return runs


def test_a_review_is_one_transaction(store: PreferenceStore, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = add_simple_batch(store, "b1", ["ckA", "ckA", "ckB", "ckB"])
    runs = _count_transactions(monkeypatch)
    result = store.apply_review("alice", "b1", REVIEW)
    assert len(runs) == 1
    assert result == FeedbackResult("b1", frozenset({ids[0]}), frozenset(ids[1:]), True, True)
    created = store.read_sql("SELECT DISTINCT created_at FROM feedback")
    assert len(created) == 1 and table_rows(store, "feedback") == 5  # one write's rows
    assert counts(store, "alice", "*", "ckA") == (2, 1, 1)
    assert counts(store, "alice", "*", "ckB") == (2, 0, 2)
    assert store.total_reviews("alice") == 1 and store.aggregates_equal_rebuild()


@pytest.mark.parametrize("bad_step, error, user", [
    (("select", ["nope"]), UnknownImageError, "alice"),
    (("select", ["bob-batch-0"]), UnknownImageError, "alice"),
    (("reject", []), ValueError, "alice"),
    (("viewed", ["b1-0"]), ValueError, "alice"),
    (("like", ["b1-0"]), ValueError, "alice"),
    (("select", ["b1-0"]), UnknownBatchError, "bob"),
])
def test_a_refused_step_3_writes_nothing_of_steps_1_and_2(
    store: PreferenceStore, bad_step: tuple[str, list[str]], error: type[Exception], user: str
) -> None:
    ids = add_simple_batch(store, "b1", ["ckA", "ckB", "ckB"])
    add_simple_batch(store, "bob-batch", ["ckA"], user_id="bob")
    with pytest.raises(error):
        store.apply_review(user, "b1", [("select", [ids[0]]), ("reject", [ids[1]]), bad_step])
    assert table_rows(store, "feedback") == 0
    assert store.get_batch("b1", "alice").reviewed_at is None
    assert store.total_reviews(None) == 0 and counts(store, "alice", "*", "ckA") == (0, 0, 0)
    assert store.batch_snapshot("b1").facts.states() == {i: "none" for i in ids}
    with pytest.raises(ValueError, match="at least one step"):
        store.apply_review("alice", "b1", [])


def test_a_failure_mid_review_rolls_back_every_step(
    store: PreferenceStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The review's feedback rows, reviewed_at and review_seq are written, then the aggregate
    changes fail: the transaction rolls back, the in-memory copies stay as they were."""
    ids = add_simple_batch(store, "b1", ["ckA", "ckA", "ckB", "ckB"])
    add_simple_batch(store, "b0", ["ckA"])
    store.apply_feedback("alice", "b0", "select", ["b0-0"])
    before = evidence_snapshot(store, ("alice", None), ("cat", "*"), ("ckA", "ckB"))
    fail_after_aggregate_changes(monkeypatch)
    with pytest.raises(RuntimeError, match="disk full"):
        store.apply_review("alice", "b1", REVIEW)
    monkeypatch.undo()
    assert table_rows(store, "feedback") == 1  # b0's select only
    assert store.get_batch("b1", "alice").reviewed_at is None
    assert evidence_snapshot(store, ("alice", None), ("cat", "*"), ("ckA", "ckB")) == before
    assert store.batch_snapshot("b1").facts.states() == {i: "none" for i in ids}
    assert store.aggregates_equal_rebuild()
    assert store.apply_review("alice", "b1", REVIEW).selected == {ids[0]}  # the writer carries on
    assert store.total_reviews("alice") == 2 and store.aggregates_equal_rebuild()


def _steps(ids: list[str]) -> st.SearchStrategy[list[tuple[str, list[str]]]]:
    click = st.tuples(st.sampled_from(["select", "unselect", "reject"]),
                      st.lists(st.sampled_from(ids), min_size=1, max_size=3))
    batch_action = st.tuples(st.sampled_from(["reject_all", "viewed"]), st.just([]))
    return st.lists(st.one_of(click, batch_action), min_size=1, max_size=5)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_a_review_equals_its_steps_applied_one_by_one(data: st.DataObject) -> None:
    """Two stores with the same history; one takes a review in one call, the other step by step.
    Same result (`changed`: some step changed something), same facts, same numbers."""
    stores = [PreferenceStore.open(":memory:", half_life=2.0) for _ in range(2)]
    try:
        earlier = data.draw(st.lists(st.sampled_from(["select", "viewed", "none"]), max_size=3))
        statuses = data.draw(st.lists(st.sampled_from(["done", "done", "queued"]),
                                      min_size=1, max_size=4))
        for store in stores:
            for n, action in enumerate(earlier):
                ids = add_simple_batch(store, f"a{n}", ["ckA", "ckB"], keywords=("cat",))
                if action != "none":
                    store.apply_feedback("alice", f"a{n}", action, ids[:1] if action == "select" else [])
            ids = add_simple_batch(store, "b1", ["ckA", "ckB", "ckC", "ckA"][:len(statuses)],
                                   statuses=statuses, loras=(("detail", 0.5),))
        rounds = data.draw(st.lists(_steps(ids), min_size=1, max_size=3))
        for steps in rounds:  # a first review, then maybe later ones on the reviewed batch
            together = stores[0].apply_review("alice", "b1", steps)
            one_by_one = [stores[1].apply_feedback("alice", "b1", a, i) for a, i in steps]
            assert together == replace(one_by_one[-1],
                                       changed=any(r.changed for r in one_by_one))
        users, keywords, arms = ("alice", None), ("cat", "portrait", "*"), ("ckA", "detail")
        assert evidence_snapshot(stores[0], users, keywords, arms) == pytest.approx(
            evidence_snapshot(stores[1], users, keywords, arms), rel=1e-12, abs=1e-12)
        facts = [s.read_sql("SELECT image_id, action FROM feedback ORDER BY feedback_id")
                 .to_dict("records") for s in stores]
        assert facts[0] == facts[1]
        assert stores[0].batch_snapshot("b1").facts.states() == \
            stores[1].batch_snapshot("b1").facts.states()
        assert all(s.aggregates_equal_rebuild() for s in stores)
    finally:
        for store in stores:
            store.close()


def test_a_favourite_selects_counts_as_favourite_weight_selections_and_ends_on_unselect(
        store: PreferenceStore) -> None:
    ids = add_simple_batch(store, "f1", ["ckA", "ckA", "ckB"], statuses=["done", "done", "queued"])
    result = store.apply_feedback("alice", "f1", "favourite", [ids[0]])
    assert result.reviewed and result.changed  # a favourite reviews the batch
    assert result.selected == {ids[0]} and result.favourites == {ids[0]}
    # the favourite counts FAVOURITE_WEIGHT shown and selected, the other done image 1 shown
    assert counts(store, "alice", "*", "ckA") == (FAVOURITE_WEIGHT + 1, FAVOURITE_WEIGHT, 0)
    again = store.apply_feedback("alice", "f1", "select", [ids[0]])  # a re-select keeps it
    assert again.favourites == {ids[0]} and not again.changed
    off = store.apply_feedback("alice", "f1", "unfavourite", [ids[0]])
    assert off.changed and off.selected == {ids[0]} and off.favourites == frozenset()
    assert counts(store, "alice", "*", "ckA") == (2, 1, 0)
    store.apply_feedback("alice", "f1", "favourite", [ids[0]])
    ended = store.apply_feedback("alice", "f1", "unselect", [ids[0]])
    assert ended.favourites == frozenset() and ended.selected == frozenset()
    assert counts(store, "alice", "*", "ckA") == (2, 0, 0)
    with pytest.raises(ImageNotDoneError):  # the queued image cannot be a favourite
        store.apply_feedback("alice", "f1", "favourite", [ids[2]])
    assert counts(store, "alice", "*", "ckB") == (0, 0, 0)
