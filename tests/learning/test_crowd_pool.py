"""Sharing choices and the crowd pool (learning.store.sharing, learning.store.crowd_pool): who is pooled,
what leaves the store, freshness, persistence."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from pathlib import Path

import pytest

from learning.models import ArmStat
from learning.store.crowd_pool import MIN_CONTRIBUTORS, CrowdPool, CrowdSnapshot
from learning.store.preference_store import PreferenceStore
from tests.learning.store_builders import add_simple_batch

ARMS = ["ckA", "ckB", "ckC"]
KEYWORDS = ["portrait", "cat"]


def review(store: PreferenceStore, user: str, batch: str, picks: dict[str, bool]) -> None:
    """One reviewed batch of `user`: one image per checkpoint, the True ones selected, the rest rejected."""
    ids = add_simple_batch(store, batch, list(picks), user_id=user, keywords=("portrait",))
    selected = [i for i, pick in zip(ids, picks.values()) if pick]
    rejected = [i for i, pick in zip(ids, picks.values()) if not pick]
    store.apply_review(user, batch, [step for step in [("select", selected), ("reject", rejected)] if step[1]])


def populate(store: PreferenceStore) -> None:
    review(store, "bob", "b1", {"ckA": True, "ckB": False})
    review(store, "cid", "c1", {"ckA": True, "ckC": False})
    review(store, "dan", "d1", {"ckA": False, "ckB": True, "ckC": True})
    review(store, "eve", "e1", {"ckA": True, "ckB": True, "ckC": True})


def members_sum(store: PreferenceStore, users: list[str]) -> dict[tuple[str, str], ArmStat]:
    """What the pool must hold: the members' own evidence (the in-memory aggregates), summed."""
    total: dict[tuple[str, str], list[float]] = {}
    for user in users:
        for key, stat in store.arm_stats(user, "checkpoint", KEYWORDS, ARMS).items():
            cell = total.setdefault(key, [0.0, 0.0])
            cell[0] += stat.shown
            cell[1] += stat.selected
    return {key: ArmStat(shown, selected) for key, (shown, selected) in total.items()}


def test_nobody_shares_until_they_opt_in_and_setting_it_again_changes_nothing(store: PreferenceStore) -> None:
    assert not store.shares_preferences("bob")
    assert store.set_sharing("bob", True) is True
    assert store.set_sharing("bob", True) is False
    assert store.shares_preferences("bob") and not store.shares_preferences("cid")
    rows = store.read_sql("SELECT user_id, share FROM preference_sharing")
    assert rows.to_dict("records") == [{"user_id": "bob", "share": True}]  # the repeat wrote nothing
    assert store.set_sharing("bob", False) is True and not store.shares_preferences("bob")


def test_only_opted_in_users_are_pooled_and_the_users_own_rows_are_left_out(store: PreferenceStore) -> None:
    populate(store)
    for user in ("bob", "cid", "dan"):
        store.set_sharing(user, True)  # eve never opts in
    assert store.crowd_evidence("ann", KEYWORDS, ARMS) == pytest.approx(members_sum(store, ["bob", "cid", "dan"]))
    # bob's prior is made of cid's and dan's rows only; ckB then has one contributor (dan): not shown
    bob = store.crowd_evidence("bob", KEYWORDS, ARMS)
    expected = members_sum(store, ["cid", "dan"])
    assert bob == pytest.approx({key: stat for key, stat in expected.items() if key[1] in ("ckA", "ckC")})
    assert ("portrait", "ckB") not in bob
    # eve's own rows are in no one's pool, and she is pooled from the others like anyone
    assert store.crowd_evidence("eve", KEYWORDS, ARMS) == store.crowd_evidence("ann", KEYWORDS, ARMS)


def test_a_cell_made_of_fewer_than_two_other_users_never_leaves_the_store(store: PreferenceStore) -> None:
    assert MIN_CONTRIBUTORS == 2
    populate(store)
    store.set_sharing("bob", True)
    assert store.crowd_evidence("ann", KEYWORDS, ARMS) == {}  # bob alone: nothing of him is visible
    store.set_sharing("cid", True)
    pooled = store.crowd_evidence("ann", KEYWORDS, ARMS)
    assert set(pooled) == {("portrait", "ckA")}  # the one checkpoint both bob and cid saw
    assert pooled[("portrait", "ckA")] == pytest.approx(ArmStat(2.0, 2.0))


def test_an_opt_out_leaves_the_pool_at_once(store: PreferenceStore) -> None:
    populate(store)
    for user in ("bob", "cid", "dan"):
        store.set_sharing(user, True)
    assert ("portrait", "ckA") in store.crowd_evidence("ann", KEYWORDS, ARMS)
    store.set_sharing("dan", False)
    assert store.crowd_evidence("ann", KEYWORDS, ARMS) == pytest.approx(
        {key: stat for key, stat in members_sum(store, ["bob", "cid"]).items() if key == ("portrait", "ckA")})


def test_choices_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "dg.duckdb"
    with PreferenceStore.open(path) as first:
        populate(first)
        first.set_sharing("bob", True)
        first.set_sharing("cid", True)
        first.set_sharing("cid", False)
        first.set_sharing("dan", True)
        before = first.crowd_evidence("ann", KEYWORDS, ARMS)
    with PreferenceStore.open(path) as second:
        assert [second.shares_preferences(u) for u in ("bob", "cid", "dan", "eve")] == [True, False, True, False]
        assert second.crowd_evidence("ann", KEYWORDS, ARMS) == pytest.approx(before)


def test_new_reviews_of_members_reach_the_pool_on_a_rebuild(store: PreferenceStore) -> None:
    populate(store)
    for user in ("bob", "cid"):
        store.set_sharing(user, True)
    before = store.crowd_evidence("ann", KEYWORDS, ARMS)[("portrait", "ckA")]
    review(store, "bob", "b2", {"ckA": True})
    assert store.crowd_evidence("ann", KEYWORDS, ARMS)[("portrait", "ckA")] == before  # the snapshot, not SQL
    store.rebuild_crowd_pool()
    after = store.crowd_evidence("ann", KEYWORDS, ARMS)[("portrait", "ckA")]
    assert after.shown > before.shown and after.selected > before.selected


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class InlineExecutor:
    """Runs a submitted rebuild on a thread we can wait for."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []

    def submit(self, fn):  # type: ignore[no-untyped-def]
        future: Future = Future()

        def run() -> None:
            future.set_result(fn())

        thread = threading.Thread(target=run)
        self.threads.append(thread)
        thread.start()
        return future


def test_a_stale_snapshot_answers_at_once_and_is_rebuilt_in_the_background() -> None:
    rows = [("bob", "portrait", "ckA", 2.0, 1.0), ("cid", "portrait", "ckA", 2.0, 2.0)]
    loads: list[int] = []

    def load() -> list:
        loads.append(1)
        return list(rows)

    clock, executor = FakeClock(), InlineExecutor()
    pool = CrowdPool(load, lambda: executor, max_age=60.0, clock=clock)  # type: ignore[arg-type, return-value]
    assert pool.pooled("ann", ["portrait"], ["ckA"]) == {("portrait", "ckA"): ArmStat(4.0, 3.0)}
    assert len(loads) == 1  # built on first use
    rows.append(("dan", "portrait", "ckA", 4.0, 0.0))
    clock.now = 30.0
    assert pool.pooled("ann", ["portrait"], ["ckA"]) == {("portrait", "ckA"): ArmStat(4.0, 3.0)}
    assert len(loads) == 1 and not executor.threads  # fresh enough: no rebuild
    clock.now = 61.0
    assert pool.pooled("ann", ["portrait"], ["ckA"]) == {("portrait", "ckA"): ArmStat(4.0, 3.0)}  # the old one, at once
    for thread in executor.threads:
        thread.join()
    assert pool.pooled("ann", ["portrait"], ["ckA"]) == {("portrait", "ckA"): ArmStat(8.0, 3.0)}
    assert len(executor.threads) == 1


def test_a_snapshot_takes_each_users_own_rows_out_exactly() -> None:
    snapshot = CrowdSnapshot.of([("bob", "k", "a", 3.0, 1.0), ("cid", "k", "a", 5.0, 4.0), ("dan", "k", "a", 1.0, 0.0)],
                                taken_at=0.0)
    assert snapshot.pooled_for("ann", ["k"], ["a"]) == {("k", "a"): ArmStat(9.0, 5.0)}
    assert snapshot.pooled_for("cid", ["k"], ["a"]) == {("k", "a"): ArmStat(4.0, 1.0)}
    assert snapshot.pooled_for("ann", ["k"], ["b"]) == {}
