"""The store's part of image retention: the pruned_at migration, which images are protected, and
marking images pruned without touching feedback or aggregates."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import duckdb

from learning.store.preference_store import PreferenceStore
from learning.store.retention_sql import FAVOURITE, NOT_A_DRAFT, NOT_DONE, REFINE_PARENT, SELECTED
from learning.store.schema import LATEST_VERSION, MIGRATIONS, migrate, schema_version
from tests.learning.store_builders import add_simple_batch, make_batch, make_image


def reasons(store: PreferenceStore) -> dict[str, tuple[str, ...]]:
    return {row.image_id: row.protected for row in store.retention_rows()}


def test_a_file_from_before_retention_migrates_and_keeps_its_images(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    assert migrate(con, MIGRATIONS[:2]) == 2  # what the release before retention wrote
    con.execute("""INSERT INTO batches VALUES ('b0', 'alice', 's1', 'a cat', '', ['cat'], 'draft',
                   'sd15', true, false, 'explore', 'ckA', 0.4, 1, 'adaptive', NULL,
                   TIMESTAMP '2025-01-01 10:00:00', NULL)""")
    con.execute("""INSERT INTO images (image_id, batch_id, user_id, checkpoint, loras, seed, batch_index, width,
                   height, steps, cfg, sampler_name, scheduler, denoise, status, path, created_at, finished_seq)
                   VALUES ('i0', 'b0', 'alice', 'ckA', [], 7, 0, 512, 512, 8, 5.0, 'euler', 'normal', 1.0,
                   'done', 'images/i0/i0.png', TIMESTAMP '2025-01-01 10:00:00', nextval('fact_seq'))""")
    con.close()
    with PreferenceStore.open(path) as store:
        assert int(store.read_sql("SELECT max(version) AS v FROM schema_version")["v"][0]) == LATEST_VERSION
        image = store.get_image("i0", "alice")
        assert image is not None and image.pruned_at is None and image.seed == 7
        assert reasons(store) == {"i0": ()}
        assert store.mark_pruned(["i0"]) == [("i0", "b0")]
        assert store.get_image("i0", "alice").pruned_at is not None
        assert store.aggregates_equal_rebuild()
    con = duckdb.connect(str(path))
    try:
        assert schema_version(con) == LATEST_VERSION
    finally:
        con.close()


def test_protected_images_and_why(store: PreferenceStore) -> None:
    drafts = add_simple_batch(store, "d1", ["ckA", "ckB", "ckC", "ckD"], statuses=["done", "done", "queued", "done"])
    failed = add_simple_batch(store, "d2", ["ckA"], statuses=["failed"])
    store.apply_feedback("alice", "d1", "select", [drafts[0]])
    refine = replace(make_batch("r1", count=1), tier="standard", parent_batch_id="d1")
    store.add_batch(refine, [make_image(refine, 0, parent_image_id=drafts[1])])
    got = reasons(store)
    assert got[drafts[0]] == (SELECTED,)
    assert got[drafts[1]] == (REFINE_PARENT,)
    assert got[drafts[2]] == (NOT_DONE,)
    assert got[drafts[3]] == ()
    assert got["r1-0"] == (NOT_A_DRAFT,)
    assert failed[0] not in got  # a failed image has no file

    store.apply_feedback("alice", "d1", "unselect", [drafts[0]])  # the current selection decides
    assert reasons(store)[drafts[0]] == ()


def test_a_favourite_is_never_pruned_even_once_unfavourited_it_stays_selected(store: PreferenceStore) -> None:
    drafts = add_simple_batch(store, "f1", ["ckA", "ckB"], statuses=["done", "done"])
    store.apply_feedback("alice", "f1", "favourite", [drafts[0]])
    assert reasons(store)[drafts[0]] == (SELECTED, FAVOURITE)
    marked = dict(store.mark_pruned(drafts))
    assert drafts[0] not in marked and drafts[1] in marked  # the favourite keeps its file
    assert reasons(store)[drafts[0]] == (SELECTED, FAVOURITE)
    store.apply_feedback("alice", "f1", "unfavourite", [drafts[0]])
    assert reasons(store)[drafts[0]] == (SELECTED,)


def test_mark_pruned_checks_protection_again_and_changes_no_fact_or_aggregate(store: PreferenceStore) -> None:
    ids = add_simple_batch(store, "b1", ["ckA", "ckB", "ckC"])
    store.apply_feedback("alice", "b1", "reject", [ids[2]])
    assert all(reasons(store)[i] == () for i in ids)
    chosen = list(ids)  # chosen while all three were unprotected...
    store.apply_feedback("alice", "b1", "select", [ids[0]])  # ...then one is selected before the write
    totals = store.arm_totals("alice", "checkpoint")
    feedback = store.read_sql("SELECT * FROM feedback ORDER BY feedback_id")
    stats = store.read_sql("SELECT * FROM preference_stats_now(100.0) ORDER BY ALL")

    assert sorted(store.mark_pruned(chosen)) == [(ids[1], "b1"), (ids[2], "b1")]
    assert store.mark_pruned(chosen) == []  # pruned already, or protected
    assert [store.get_image(i, "alice").pruned_at is not None for i in ids] == [False, True, True]
    assert set(reasons(store)) == {ids[0]}
    assert sorted(store.pruned_among(ids)) == sorted(ids[1:])
    snapshot = store.batch_snapshot("b1")
    assert [i.pruned_at is not None for i in snapshot.images] == [False, True, True]
    assert snapshot.facts.states() == {ids[0]: "selected", ids[1]: "none", ids[2]: "rejected"}

    assert store.arm_totals("alice", "checkpoint") == totals
    assert store.read_sql("SELECT * FROM feedback ORDER BY feedback_id").equals(feedback)
    assert store.read_sql("SELECT * FROM preference_stats_now(100.0) ORDER BY ALL").equals(stats)
    assert store.aggregates_equal_rebuild()
