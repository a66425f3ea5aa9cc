"""Properties every plan keeps, whatever the evidence: sizes, membership, determinism."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from learning.models import ArmStat
from learning.recommend.planner import POLICIES, PolicyConfig, RecommendRequest, recommend

KEYWORDS = ("photorealist", "portrait", "anim", "girl")


@st.composite
def planning_inputs(draw: st.DrawFn) -> tuple[RecommendRequest, dict[tuple[str, str], ArmStat], ArmStat]:
    pool = tuple(f"ckpt{i}" for i in range(draw(st.integers(1, 12))))
    keywords = tuple(draw(st.lists(st.sampled_from(KEYWORDS), max_size=4, unique=True)))
    evidence = {}
    for kw in keywords:
        for arm in pool:
            if draw(st.booleans()):
                shown = draw(st.floats(0.0, 400.0))
                evidence[(kw, arm)] = ArmStat(shown, draw(st.floats(0.0, 1.0)) * shown)
    base_shown = draw(st.floats(0.0, 2000.0))
    req = RecommendRequest(
        keywords, pool, draw(st.sampled_from(["draft", "standard", "quality"])), draw(st.integers(1, 64)),
        quick=draw(st.booleans()),
    )
    return req, evidence, ArmStat(base_shown, draw(st.floats(0.0, 1.0)) * base_shown)


@settings(max_examples=150, deadline=None, database=None)
@given(planning_inputs(), st.sampled_from(POLICIES), st.integers(0, 2**32))
def test_every_plan_is_well_formed(inputs, policy: str, seed: int) -> None:
    req, evidence, base = inputs
    rec = recommend(req, evidence, base, policy=policy, rng=random.Random(seed))
    assert sum(rec.allocation.values()) == req.count
    assert all(n > 0 for n in rec.allocation.values())
    assert set(rec.allocation) <= set(req.pool)
    assert rec.checkpoints_to_test == list(rec.allocation)
    assert set(rec.scores) == set(req.pool)
    assert rec.recommended in req.pool and 0.0 <= rec.confidence <= 1.0
    if rec.mode in ("single", "quick"):
        assert rec.allocation == {rec.recommended: req.count}
    if rec.mode == "recommended_backup":
        (first, n_first), *rest = rec.allocation.items()
        assert first == rec.recommended and len(rest) <= 1
        assert all(n_first >= n for _, n in rest)


@settings(max_examples=100, deadline=None, database=None)
@given(planning_inputs(), st.integers(0, 2**32))
def test_adaptive_keeps_the_width_rules(inputs, seed: int) -> None:
    req, evidence, base = inputs
    rec = recommend(req, evidence, base, rng=random.Random(seed))
    if req.quick:
        return
    assert rec.mode != "single" or req.tier != "draft"
    reachable = min(len(req.pool), req.count)
    if req.tier == "draft":
        assert len(rec.allocation) >= min(2, reachable)
    if rec.mode == "explore" and rec.confidence <= PolicyConfig().backup_threshold:
        assert len(rec.allocation) >= min(3, reachable)
    if len(rec.allocation) > 1 or rec.mode == "explore":
        assert rec.checkpoints_to_test[0] == rec.recommended


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("tier", ["draft", "standard"])
def test_one_image_and_a_pool_of_one_work(policy: str, tier: str) -> None:
    one_image = recommend(RecommendRequest(KEYWORDS, ("a", "b", "c"), tier, 1), {}, ArmStat(0, 0), policy=policy)  # type: ignore[arg-type]
    assert sum(one_image.allocation.values()) == 1
    lone = recommend(RecommendRequest(KEYWORDS, ("a",), tier, 20), {}, ArmStat(0, 0), policy=policy)  # type: ignore[arg-type]
    assert lone.allocation == {"a": 20} and lone.recommended == "a"


def test_the_same_rng_seed_gives_the_same_plan() -> None:
    evidence = {("portrait", f"ckpt{i}"): ArmStat(10.0 + i, 3.0 + i % 4) for i in range(12)}
    req = RecommendRequest(("portrait", "woman"), tuple(f"ckpt{i}" for i in range(12)), "draft", 20)
    plans = [recommend(req, evidence, ArmStat(200, 40), rng=random.Random(42)) for _ in range(2)]
    assert plans[0] == plans[1]
    other = [recommend(req, evidence, ArmStat(200, 40), rng=random.Random(s)).allocation for s in range(5)]
    assert len({tuple(a.items()) for a in other}) > 1  # the seed really drives the Thompson draws


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"count": 0}, "count"), ({"count": 65}, "count"), ({"pool": ()}, "empty"), ({"pool": ("a", "a")}, "duplicates")],
)
def test_bad_requests_are_refused(kwargs: dict, message: str) -> None:
    args = {"keywords": KEYWORDS, "pool": ("a", "b"), "tier": "draft", "count": 20} | kwargs
    with pytest.raises(ValueError, match=message):
        RecommendRequest(**args)


def test_unknown_policy_and_bad_config_are_refused() -> None:
    req = RecommendRequest(KEYWORDS, ("a", "b"), "draft", 4)
    with pytest.raises(ValueError, match="unknown policy"):
        recommend(req, {}, ArmStat(0, 0), policy="oracle")
    with pytest.raises(ValueError, match="prior_strength"):
        PolicyConfig(prior_strength=0)
    with pytest.raises(ValueError, match="threshold"):
        PolicyConfig(backup_threshold=0.6, single_threshold=0.5)
