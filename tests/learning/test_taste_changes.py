"""Changes of taste (issue 11): the change test, restarts, and the adaptive policy following them."""

from __future__ import annotations

import logging
import random

import pytest

from learning.models import DEFAULT_USER, ArmStat
from learning.recommend.planner import RecommendRequest, recommend
from learning.store.evidence_memory import InMemoryEvidence, ReviewedImage
from learning.store.preference_store import PreferenceStore
from learning.store.taste_changes import CHANGE_THRESHOLD, change_statistic
from tests.learning.store_builders import add_simple_batch

POOL = ("ckA", "ckB", "ckC", "ckD")
KEYWORDS = ("photorealist", "portrait")


def test_the_statistic_needs_both_a_gap_and_evidence() -> None:
    long_run = ArmStat(400, 240)  # 60 %
    assert change_statistic(long_run, ArmStat(20, 3)) > CHANGE_THRESHOLD  # 15 % of 20: a change
    assert change_statistic(long_run, ArmStat(20, 11)) == 0  # 55 %: the same taste
    assert change_statistic(long_run, ArmStat(3, 0)) == 0  # three images say too little
    assert change_statistic(ArmStat(400, 40), ArmStat(20, 14)) > CHANGE_THRESHOLD  # a rise counts too


def review(evidence: InMemoryEvidence, allocation: dict[str, int], rates: dict[str, float],
           clicks: random.Random) -> None:
    evidence.record_review(KEYWORDS, [ReviewedImage(c, clicks.random() < rates.get(c, 0.1))
                                      for c, n in allocation.items() for _ in range(n)])


def plan(evidence: InMemoryEvidence, tier: str, seed: int) -> dict[str, int]:
    req = RecommendRequest(KEYWORDS, POOL, tier, 20)  # type: ignore[arg-type]
    stats = evidence.arm_evidence(DEFAULT_USER, "checkpoint", KEYWORDS, POOL)
    return recommend(req, stats, evidence.base_rate(DEFAULT_USER, "checkpoint"), rng=random.Random(seed)).allocation


@pytest.mark.parametrize("seed", range(4))
def test_the_policy_follows_a_change_of_favourite_within_a_few_batches(
    seed: int, caplog: pytest.LogCaptureFixture
) -> None:
    evidence, clicks = InMemoryEvidence(100.0), random.Random(seed)
    before, after = {"ckA": 0.6}, {"ckD": 0.6, "ckA": 0.1}
    for b in range(30):
        review(evidence, plan(evidence, "draft" if b % 3 == 0 else "standard", seed * 100 + b), before, clicks)
    assert plan(evidence, "standard", seed)["ckA"] == 20
    with caplog.at_level(logging.INFO, logger="learning.store.taste_changes"):
        reached = None
        for b in range(12):
            allocation = plan(evidence, "draft" if b % 3 == 0 else "standard", seed * 100 + 50 + b)
            if allocation.get("ckD", 0) >= 10:
                reached = b + 1
                break
            review(evidence, allocation, after, clicks)
    assert reached is not None and reached <= 6, reached
    (line,) = [r.getMessage() for r in caplog.records if r.name == "learning.store.taste_changes"]
    assert "'photorealist'" in line or "'portrait'" in line
    assert "ckA" in line and "exploring again" in line and "\n" not in line


@pytest.mark.parametrize("seed", range(4))
def test_a_steady_taste_never_restarts(seed: int, caplog: pytest.LogCaptureFixture) -> None:
    evidence, clicks = InMemoryEvidence(100.0), random.Random(seed)
    with caplog.at_level(logging.INFO, logger="learning.store.taste_changes"):
        for b in range(60):
            review(evidence, plan(evidence, "draft" if b % 3 == 0 else "standard", b), {"ckB": 0.5, "ckC": 0.4}, clicks)
    assert not [r for r in caplog.records if r.name == "learning.store.taste_changes"]
    assert plan(evidence, "standard", 0) == {"ckB": 20}


def test_the_store_follows_a_change_and_keeps_its_aggregates(store: PreferenceStore) -> None:
    """Through the store: arm_evidence discounts what was learnt before the change; arm_stats, the
    stats and the rebuild are the plain aggregates still."""
    def batch(n: int, favourite: str) -> None:
        ids = add_simple_batch(store, f"b{n}", ["ckA"] * 10 + ["ckB"] * 10, keywords=KEYWORDS, user_id="u")
        picks = [i for i, ck in zip(ids, ["ckA"] * 10 + ["ckB"] * 10) if ck == favourite]
        store.apply_feedback("u", f"b{n}", "select", picks)

    for n in range(20):
        batch(n, "ckA")
    plain = store.arm_evidence("u", "checkpoint", KEYWORDS, ("ckA", "ckB"))
    assert plain == store.arm_stats("u", "checkpoint", KEYWORDS, ("ckA", "ckB"))  # nothing changed yet
    batch(20, "ckB")
    batch(21, "ckB")
    followed = store.arm_evidence("u", "checkpoint", KEYWORDS, ("ckA", "ckB"))
    raw = store.arm_stats("u", "checkpoint", KEYWORDS, ("ckA", "ckB"))
    a, b = followed[("portrait", "ckA")], followed[("portrait", "ckB")]
    assert a.shown < 0.3 * raw[("portrait", "ckA")].shown  # the old history weighs little now
    assert b.selected / b.shown > a.selected / a.shown
    assert store.aggregates_equal_rebuild()
    assert store.arm_totals("u", "checkpoint")["ckA"]["selected"] == 200
