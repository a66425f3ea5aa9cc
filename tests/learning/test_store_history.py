"""The history query (learning.store.history_sql): filters, paging, totals, and the selection state
it shows being the one the monitoring views show (one rule)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

import duckdb

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from learning.store.history_sql import MAX_LIMIT, PAGING_FIELDS, HistoryFilter, _CONDITIONS
from learning.store.preference_store import PreferenceStore
from learning.store.schema import MIGRATIONS, migrate
from tests.learning.store_builders import add_simple_batch


def _ids(store: PreferenceStore, user: str = "alice", **filters: object) -> list[str]:
    return [row.image_id for row in store.history(user, HistoryFilter(**filters)).rows]  # type: ignore[arg-type]


@pytest.fixture
def filled(store: PreferenceStore) -> PreferenceStore:
    """Three batches of alice (two prompts, two checkpoints, one LoRA) and one of bob."""
    cats = add_simple_batch(store, "b1", ["ckA", "ckB"], keywords=("cat", "portrait"))
    add_simple_batch(store, "b2", ["ckA"], keywords=("dog",), loras=(("lora/ink.safetensors", 0.8),))
    add_simple_batch(store, "b3", ["ckB", "ckB"], keywords=("cat", "city"), statuses=["done", "failed"])
    add_simple_batch(store, "bob1", ["ckA"], user_id="bob", keywords=("cat",))
    store.apply_feedback("alice", "b1", "select", [cats[1]])
    return store


def test_every_filter_field_has_exactly_one_condition() -> None:
    assert set(_CONDITIONS) | PAGING_FIELDS == {f.name for f in fields(HistoryFilter)}


def test_newest_first_only_the_users_images_with_total(filled: PreferenceStore) -> None:
    page = filled.history("alice", HistoryFilter())
    assert page.total == 5
    assert [r.batch_id for r in page.rows] == ["b3", "b3", "b2", "b1", "b1"]
    created = [r.created_at for r in page.rows]
    assert created == sorted(created, reverse=True)
    assert filled.history("bob", HistoryFilter()).total == 1
    assert filled.history("carol", HistoryFilter()).total == 0


def test_filters(filled: PreferenceStore) -> None:
    assert set(_ids(filled, prompt="CAT")) == {"b1-0", "b1-1", "b3-0", "b3-1"}  # case-insensitive substring
    assert _ids(filled, prompt="at port") == ["b1-1", "b1-0"]
    assert set(_ids(filled, keyword="cat")) == {"b1-0", "b1-1", "b3-0", "b3-1"}
    assert set(_ids(filled, checkpoint="ckB")) == {"b1-1", "b3-0", "b3-1"}
    assert _ids(filled, lora="lora/ink.safetensors") == ["b2-0"]
    assert _ids(filled, tier="quality") == []
    assert len(_ids(filled, tier="draft")) == 5
    assert _ids(filled, selected=True) == ["b1-1"]
    assert len(_ids(filled, selected=False)) == 4
    assert _ids(filled, checkpoint="ckB", prompt="city", selected=False) == ["b3-1", "b3-0"]


def test_selected_is_the_monitoring_views_state(filled: PreferenceStore) -> None:
    """After a select, a Reject-all and an unselect the history shows what image_logs shows."""
    filled.apply_feedback("alice", "b3", "reject_all")
    filled.apply_feedback("alice", "b1", "unselect", ["b1-1"])
    filled.apply_feedback("alice", "b1", "select", ["b1-0"])
    expected = filled.read_sql("SELECT image_id, selected FROM image_logs WHERE user_id = 'alice'")
    rows = filled.history("alice", HistoryFilter()).rows
    assert {r.image_id: r.selected for r in rows} == dict(zip(expected["image_id"], expected["selected"]))
    assert _ids(filled, selected=True) == ["b1-0"]


def test_date_range(filled: PreferenceStore) -> None:
    rows = filled.history("alice", HistoryFilter()).rows
    b2 = next(r for r in rows if r.batch_id == "b2").created_at
    assert set(_ids(filled, since=b2)) == {"b2-0", "b3-0", "b3-1"}
    assert set(_ids(filled, until=b2)) == {"b1-0", "b1-1"}


def test_pages_cover_the_matches_once(filled: PreferenceStore) -> None:
    pages = [filled.history("alice", HistoryFilter(limit=2, offset=o)) for o in (0, 2, 4, 6)]
    assert [len(p.rows) for p in pages] == [2, 2, 1, 0]
    assert all(p.total == 5 for p in pages)
    assert [r.image_id for p in pages for r in p.rows] == _ids(filled)


def test_row_carries_the_image_and_batch(filled: PreferenceStore) -> None:
    row = next(r for r in filled.history("alice", HistoryFilter(lora="lora/ink.safetensors")).rows)
    assert (row.batch_id, row.prompt, row.checkpoint, row.loras, row.seed, row.tier, row.status) == (
        "b2", "dog", "ckA", ("lora/ink.safetensors",), 1000, "draft", "done")
    failed = filled.history("alice", HistoryFilter(prompt="city")).rows
    assert sorted(r.status for r in failed) == ["done", "failed"]


@pytest.mark.parametrize("bad", [dict(limit=0), dict(limit=MAX_LIMIT + 1), dict(offset=-1)])
def test_bad_paging_is_refused(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        HistoryFilter(**bad)  # type: ignore[arg-type]


def test_an_empty_range_is_refused(filled: PreferenceStore) -> None:
    when = filled.history("alice", HistoryFilter()).rows[0].created_at
    with pytest.raises(ValueError, match="since must be before until"):
        HistoryFilter(since=when, until=when)


def test_favourite_filter_and_column(filled: PreferenceStore) -> None:
    filled.apply_feedback("alice", "b2", "favourite", ["b2-0"])
    assert _ids(filled, favourite=True) == ["b2-0"]
    assert "b2-0" not in _ids(filled, favourite=False)
    rows = {r.image_id: r for r in filled.history("alice", HistoryFilter()).rows}
    assert rows["b2-0"].favourite and rows["b2-0"].selected  # a favourite selects
    assert not rows["b1-1"].favourite and rows["b1-1"].selected


def _places(store: PreferenceStore, user: str) -> list[tuple[str, int]]:
    rows = store.read_sql("SELECT image_id, history_seq FROM images WHERE user_id = ? ORDER BY history_seq", [user])
    return list(rows.itertuples(index=False, name=None))


def test_history_seq_numbers_each_users_images_in_the_order_stored(filled: PreferenceStore) -> None:
    """1..n per user, no gaps, another user's images numbered apart; within a batch (one
    created_at for all) in image_id order: the tie-break newest first is image_id descending."""
    add_simple_batch(filled, "b4", ["ckA"] * 12)  # b4-10 and b4-11 sort before b4-2
    assert _places(filled, "bob") == [("bob1-0", 1)]
    ids = ["b1-0", "b1-1", "b2-0", "b3-0", "b3-1", *sorted(f"b4-{n}" for n in range(12))]
    assert _places(filled, "alice") == [(image_id, place) for place, image_id in enumerate(ids, start=1)]
    assert _ids(filled, limit=MAX_LIMIT) == ids[::-1]
    assert _ids(filled, checkpoint="ckA", limit=3) == ids[::-1][:3]  # the filtered page: the same order


def test_the_unfiltered_range_pages_like_the_filtered_top_n(filled: PreferenceStore) -> None:
    """Every image matches a `since` far back: the Top-N path; no filter: the range path. The same
    rows and totals at every offset, a partial last page, empty pages past the end."""
    add_simple_batch(filled, "b4", ["ckA"] * 6)
    since = filled.history("alice", HistoryFilter(limit=MAX_LIMIT)).rows[-1].created_at
    for offset in range(0, 14):
        plain = filled.history("alice", HistoryFilter(limit=4, offset=offset))
        filtered = filled.history("alice", HistoryFilter(limit=4, offset=offset, since=since))
        assert plain == filtered, offset
        assert plain.total == 11
        assert len(plain.rows) == max(0, min(4, 11 - offset))
    assert filled.history("alice", HistoryFilter(offset=10_000)).rows == ()
    assert filled.history("alice", HistoryFilter(offset=10_000)).total == 11
    assert filled.history("carol", HistoryFilter()) == filled.history("carol", HistoryFilter(since=since))


def _add_v9_image(con: duckdb.DuckDBPyConnection, image_id: str, batch_id: str, user: str, created: str) -> None:
    con.execute("""INSERT INTO images (image_id, batch_id, user_id, checkpoint, loras, seed, batch_index, width,
                   height, steps, cfg, sampler_name, scheduler, denoise, status, created_at)
                   VALUES (?, ?, ?, 'ckA', [], 1, 0, 512, 512, 8, 5.0, 'euler', 'normal', 1.0, 'done', ?)""",
                [image_id, batch_id, user, created])


def test_a_v9_file_gets_history_seq_back_filled_in_the_order_it_showed(tmp_path: Path) -> None:
    """Migrating numbers each user's images by (created_at, image_id), as the history sorted before;
    a batch stored after the migration comes next."""
    path = tmp_path / "v9.duckdb"
    con = duckdb.connect(str(path))
    assert migrate(con, MIGRATIONS[:9]) == 9
    for batch_id, user, created in [("old", "alice", "2025-01-02"), ("older", "alice", "2025-01-01"),
                                    ("bobs", "bob", "2025-01-03")]:
        con.execute("""INSERT INTO batches VALUES (?, ?, 's1', 'a cat', '', ['cat'], 'draft', 'sd15', true, false,
                       'explore', 'ckA', 0.4, 1, 'adaptive', NULL, ?, NULL, false)""", [batch_id, user, created])
    _add_v9_image(con, "old-b", "old", "alice", "2025-01-02")
    _add_v9_image(con, "old-a", "old", "alice", "2025-01-02")  # same time: image_id decides
    _add_v9_image(con, "older-z", "older", "alice", "2025-01-01")  # stored later, made earlier
    _add_v9_image(con, "bobs-0", "bobs", "bob", "2025-01-03")
    con.close()
    with PreferenceStore.open(path) as store:
        assert _places(store, "alice") == [("older-z", 1), ("old-a", 2), ("old-b", 3)]
        assert _places(store, "bob") == [("bobs-0", 1)]
        add_simple_batch(store, "new", ["ckA"])
        assert _places(store, "alice")[-1] == ("new-0", 4)
        assert _ids(store) == ["new-0", "old-b", "old-a", "older-z"]
        assert _ids(store, checkpoint="ckA") == ["new-0", "old-b", "old-a", "older-z"]


_STEPS = st.lists(st.tuples(st.sampled_from(["select", "unselect", "reject", "favourite", "unfavourite",
                                             "reject_all", "viewed"]),
                            st.lists(st.integers(0, 2), min_size=1, max_size=2)),
                  min_size=1, max_size=8)


@pytest.fixture(scope="module")
def shared_store() -> Iterator[PreferenceStore]:
    """One store for every example below, each example on a batch of its own (opening a store per
    example cost most of the test's time)."""
    opened = PreferenceStore.open(":memory:")
    yield opened
    opened.close()


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=_STEPS)
def test_selected_and_favourite_agree_with_the_views_over_random_feedback(
        shared_store: PreferenceStore, steps: list) -> None:
    """The history folds only the clicks (no Reject-all fold); whatever the feedback, it shows
    the selection and favourite state image_logs / image_current_state show."""
    store, batch_id = shared_store, f"h{next(_BATCH_NUMBERS)}"
    ids = add_simple_batch(store, batch_id, ["ckA", "ckB", "ckC"], user_id="hyp")
    for action, picks in steps:
        store.apply_feedback("hyp", batch_id, action,
                             [] if action in ("reject_all", "viewed") else [ids[i] for i in picks])
    views = store.read_sql("""SELECT l.image_id, l.selected, coalesce(s.favourite, false) AS favourite
                              FROM image_logs l LEFT JOIN image_current_state s USING (batch_id, image_id)
                              WHERE l.batch_id = ?""", [batch_id])
    expected = {row.image_id: (bool(row.selected), bool(row.favourite)) for row in views.itertuples()}
    shown = {r.image_id: (r.selected, r.favourite) for r in store.history("hyp", HistoryFilter(limit=3)).rows}
    assert shown == expected  # the newest batch comes first: exactly this one's three images
    for flag in (True, False):
        assert set(_ids(store, "hyp", selected=flag)) & set(ids) == {i for i, (sel, _) in expected.items() if sel == flag}
        assert set(_ids(store, "hyp", favourite=flag)) & set(ids) == {i for i, (_, fav) in expected.items() if fav == flag}


_BATCH_NUMBERS = itertools.count()
