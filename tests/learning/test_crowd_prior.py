"""The crowd prior (learning.recommend.crowd) and how the adaptive policy uses it: weak, fading, explained."""

from __future__ import annotations

import random

import pytest

from learning.models import ArmStat
from learning.recommend.crowd import crowd_prior, fade
from learning.recommend.planner import CrowdEvidence, PolicyConfig, RecommendRequest, recommend

POOL = ("ckA", "ckB", "ckC", "ckD")
KEYWORDS = ("portrait", "woman")
CONFIG = PolicyConfig()
# the crowd loves ckB for both keywords and looked at it most
POOLED = {(kw, arm): stat for kw in KEYWORDS for arm, stat in
          {"ckA": ArmStat(60, 6), "ckB": ArmStat(400, 240), "ckC": ArmStat(40, 4), "ckD": ArmStat(20, 3)}.items()}


def crowd(own: dict[tuple[str, str], ArmStat] | None = None) -> CrowdEvidence:
    return CrowdEvidence(POOLED, own or {})


def own_history(favourite: str, images_per_arm: float, rate: float = 0.6, others: float = 0.05) -> dict[tuple[str, str], ArmStat]:
    return {(kw, arm): ArmStat(images_per_arm, images_per_arm * (rate if arm == favourite else others))
            for kw in KEYWORDS for arm in POOL}


def test_the_prior_keeps_the_crowds_rates_is_worth_a_few_images_and_is_capped_per_checkpoint() -> None:
    found = crowd_prior(crowd(), KEYWORDS, POOL, CONFIG)
    assert found is not None
    prior = found.cells()
    for kw in KEYWORDS:
        cells = {arm: prior[(kw, arm)] for arm in POOL}
        assert sum(s.shown for s in cells.values()) <= CONFIG.crowd_prior_images + 1e-9
        assert max(s.shown for s in cells.values()) <= CONFIG.crowd_arm_cap + 1e-9
        for arm, stat in cells.items():
            pooled = POOLED[(kw, arm)]
            assert stat.selected / stat.shown == pytest.approx(pooled.selected / pooled.shown)
    assert found.images == pytest.approx(sum(prior[("portrait", arm)].shown for arm in POOL))


def test_no_pooled_evidence_no_prior() -> None:
    assert crowd_prior(CrowdEvidence({}, {}), KEYWORDS, POOL, CONFIG) is None
    assert crowd_prior(crowd(), ("anime",), POOL, CONFIG) is None  # the crowd never used the keyword


def worth(own: dict[tuple[str, str], ArmStat]) -> float:
    prior = crowd_prior(crowd(own), KEYWORDS, POOL, CONFIG)
    return prior.images if prior else 0.0


def test_the_prior_fades_with_the_users_own_long_run_images() -> None:
    worth_after = [worth(own_history("ckA", n)) for n in (0, 5, 10, 40, 200)]
    assert worth_after == sorted(worth_after, reverse=True) and worth_after[0] > worth_after[-1]
    # half once the user's own images for the keyword equal what the prior is worth
    assert fade(CONFIG.crowd_prior_images, CONFIG.crowd_prior_images) == pytest.approx(0.5)
    # and gone (below one image) after a long history
    assert crowd_prior(crowd(own_history("ckA", 10_000)), KEYWORDS, POOL, CONFIG) is None


def test_the_users_own_evidence_wins_over_the_crowd() -> None:
    """Three reviewed batches' worth of the user picking ckA, the crowd loving ckB: ckA is recommended."""
    own = own_history("ckA", 15)
    req = RecommendRequest(KEYWORDS, POOL, "standard", 8)
    rec = recommend(req, own, ArmStat(60, 12), rng=random.Random(0), crowd=crowd(own))
    assert rec.recommended == "ckA"
    assert rec.crowd_prior  # still in use, and said, but outweighed


def test_a_restart_after_a_change_of_taste_does_not_bring_the_crowd_back() -> None:
    """The fade reads the long-run evidence: a restart keeps ~4 images per checkpoint of the old
    evidence, and the crowd prior stays as faded as the long history made it."""
    long_run = own_history("ckA", 40)  # 8 reviewed 20-image batches of this prompt
    restarted = own_history("ckA", 4)
    prior = crowd_prior(CrowdEvidence(POOLED, long_run), KEYWORDS, POOL, CONFIG)
    assert prior is not None and prior.images < 0.2 * CONFIG.crowd_prior_images
    # the restarted evidence the policy plans with outweighs what is left of the prior on every checkpoint
    assert all(stat.shown < restarted[key].shown for key, stat in prior.cells().items())


def test_a_cold_start_with_a_crowd_prior_samples_towards_the_crowds_favourite_but_is_not_confident() -> None:
    draft = RecommendRequest(KEYWORDS, POOL, "draft", 20)
    standard = RecommendRequest(KEYWORDS, POOL, "standard", 8)
    cold = recommend(draft, {}, ArmStat(0, 0), rng=random.Random(1))
    assert list(cold.allocation.values()) == [5, 5, 5, 5] and not cold.crowd_prior
    shares = [recommend(draft, {}, ArmStat(0, 0), rng=random.Random(seed), crowd=crowd()).allocation.get("ckB", 0)
              for seed in range(20)]
    assert sum(shares) / len(shares) > 5  # more than the even split's
    primed = recommend(standard, {}, ArmStat(0, 0), rng=random.Random(2), crowd=crowd())
    assert primed.recommended == "ckB"
    assert primed.confidence == 0.0 and primed.mode == "explore"  # no evidence of the user's own yet
    assert len(primed.allocation) >= CONFIG.min_explore


def test_the_explanation_says_when_a_crowd_prior_is_in_use() -> None:
    req = RecommendRequest(KEYWORDS, POOL, "draft", 20)
    rec = recommend(req, {}, ArmStat(0, 0), rng=random.Random(3), crowd=crowd())
    assert "crowd prior" in rec.message and "other users' picks" in rec.message
    assert set(rec.crowd_prior) == set(KEYWORDS)
    assert rec.crowd_prior["portrait"]["ckB"]["shown"] == pytest.approx(CONFIG.crowd_arm_cap, abs=0.01)
    assert rec.evidence == {"portrait": {}, "woman": {}}  # the user's own evidence stays apart
    plain = recommend(req, {}, ArmStat(0, 0), rng=random.Random(3))
    assert "crowd" not in plain.message and plain.crowd_prior == {}


@pytest.mark.parametrize("policy", ["seed", "uniform"])
def test_only_the_adaptive_policy_uses_a_crowd_prior(policy: str) -> None:
    req = RecommendRequest(KEYWORDS, POOL, "draft", 20)
    with_crowd = recommend(req, {}, ArmStat(0, 0), policy=policy, rng=random.Random(4), crowd=crowd())
    without = recommend(req, {}, ArmStat(0, 0), policy=policy, rng=random.Random(4))
    assert with_crowd == without
