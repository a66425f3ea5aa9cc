"""The building blocks: evidence decay, splitting images, the posterior and LoRA preferences."""

from __future__ import annotations

import pytest

from learning.recommend.allocation import apportion, even_split, order_by, raise_to_floors
from learning.store.evidence_memory import InMemoryEvidence, ReviewedImage
from learning.models import ArmStat
from learning.recommend.posterior import combined_posterior, prior_rate
from learning.recommend.planner import lora_preferences


def test_evidence_counts_keyword_image_pairs_and_user_totals() -> None:
    evidence = InMemoryEvidence()
    evidence.record_review(("portrait", "woman"), [ReviewedImage("a", True, loras=("film",)), ReviewedImage("b", False, True)])
    stats = evidence.arm_stats("local", "checkpoint", ("portrait", "woman", "cat"), ("a", "b"))
    assert stats[("portrait", "a")] == ArmStat(1.0, 1.0, 0.0)
    assert stats[("woman", "b")] == ArmStat(1.0, 0.0, 1.0)
    assert ("cat", "a") not in stats
    assert evidence.base_rate("local", "checkpoint") == ArmStat(2.0, 1.0, 1.0)
    assert evidence.arm_stats("local", "lora", ("portrait",), ("film",)) == {("portrait", "film"): ArmStat(1.0, 1.0, 0.0)}
    assert evidence.total_reviews("local") == 1 and evidence.total_reviews("someone") == 0
    assert evidence.arm_stats("someone", "checkpoint", ("portrait",), ("a",)) == {}


def test_evidence_halves_after_one_half_life_of_reviews() -> None:
    evidence = InMemoryEvidence(half_life_reviews=4)
    evidence.record_review(("portrait",), [ReviewedImage("a", True)] * 8)
    for _ in range(4):
        evidence.record_review(("cat",), [ReviewedImage("b", False)])
    assert evidence.arm_stats("local", "checkpoint", ("portrait",), ("a",))[("portrait", "a")] == pytest.approx(ArmStat(4.0, 4.0))
    evidence.record_review(("portrait",), [ReviewedImage("a", False)] * 2)  # age 5 → weight 2^-5/4, plus 2 new
    expected_old = 8 * 0.5 ** (5 / 4)
    stat = evidence.arm_stats("local", "checkpoint", ("portrait",), ("a",))[("portrait", "a")]
    assert stat == pytest.approx(ArmStat(expected_old + 2, expected_old))


def test_even_split_gives_the_remainder_to_the_first() -> None:
    assert even_split(20, ["a", "b", "c"]) == {"a": 7, "b": 7, "c": 6}
    assert even_split(2, ["a", "b", "c"]) == {"a": 1, "b": 1}


def test_apportion_follows_weights_and_sums_exactly() -> None:
    assert apportion(20, {"a": 0.7, "b": 0.3}) == {"a": 14, "b": 6}
    assert apportion(5, {"a": 0.0, "b": 0.0}) == {"a": 3, "b": 2}


def test_raise_to_floors_takes_from_the_best_supplied() -> None:
    assert raise_to_floors({"a": 18, "b": 2}, {"a": 1, "c": 2, "d": 1}) == {"a": 15, "b": 2, "c": 2, "d": 1}
    assert raise_to_floors({"a": 1}, {"a": 1, "b": 1}) == {"a": 1}  # nothing left to move


def test_order_by_puts_priority_first() -> None:
    assert list(order_by({"c": 1, "a": 2, "b": 3}, ["b", "a"])) == ["b", "a", "c"]


def test_prior_is_the_users_own_rate() -> None:
    assert prior_rate(ArmStat(0, 0)) == 0.5
    assert prior_rate(ArmStat(998, 98)) == pytest.approx(0.099)


def test_keywords_are_not_counted_as_independent_evidence() -> None:
    """Six keywords that saw the same 20 images are no surer than one keyword that saw them."""
    arms = ("a", "b")
    one = {("k0", "a"): ArmStat(20, 10), ("k0", "b"): ArmStat(20, 4)}
    six = {(f"k{i}", arm): stat for i in range(6) for (_, arm), stat in one.items()}
    single = combined_posterior(["k0"], arms, one, ArmStat(40, 14), 4.0)
    many = combined_posterior([f"k{i}" for i in range(6)], arms, six, ArmStat(40, 14), 4.0)
    assert many.alpha == pytest.approx(single.alpha) and many.beta == pytest.approx(single.beta)


def test_an_unseen_keyword_does_not_erase_what_the_others_learned() -> None:
    evidence = {("portrait", "a"): ArmStat(60, 40), ("portrait", "b"): ArmStat(60, 6)}
    post = combined_posterior(["portrait", "smiling"], ("a", "b"), evidence, ArmStat(120, 46), 4.0)
    assert post.mean[0] > 0.55 > 0.2 > post.mean[1]


def test_lora_preferences_rank_by_keyword_evidence_and_default_to_base_rate() -> None:
    evidence = InMemoryEvidence()
    for _ in range(5):
        evidence.record_review(
            ("anim", "girl"),
            [ReviewedImage("ckpt", i % 2 == 0, loras=("cel_shade",)) for i in range(6)]
            + [ReviewedImage("ckpt", False, loras=("film_grain",)) for _ in range(6)],
        )
    stats = evidence.arm_stats("local", "lora", ("anim", "girl"), ("cel_shade", "film_grain", "new_lora"))
    base = evidence.base_rate("local", "lora")
    prefs = lora_preferences(("anim", "girl"), ("cel_shade", "film_grain", "new_lora"), stats, base)
    assert prefs["cel_shade"] > prefs["new_lora"] > prefs["film_grain"]
    assert prefs["new_lora"] == pytest.approx(prior_rate(base), abs=1e-4)
    assert lora_preferences(("anim",), (), stats, base) == {}


def test_slightly_negative_decayed_counts_are_clamped() -> None:
    """An undo can leave w_selected a hair below zero; the posterior must stay a valid Beta."""
    from learning.models import ArmStat
    from learning.recommend.posterior import combined_posterior

    evidence = {("portrait", "a"): ArmStat(shown=3.0, selected=-0.002), ("portrait", "b"): ArmStat(shown=2.0, selected=1.0)}
    post = combined_posterior(("portrait",), ("a", "b"), evidence, ArmStat(shown=5.0, selected=-0.001), 4.0)
    assert (post.mean > 0).all() and (post.mean < 1).all()


def test_exact_p_best_agrees_with_monte_carlo() -> None:
    """best_probabilities (quadrature) against 200,000 posterior draws, on varied pools: from
    near-ties to one clear winner, broad and sharp posteriors (fixed draws: not a matter of luck)."""
    import numpy as np

    from learning.recommend.posterior import Posterior, best_probabilities, posterior_draws, win_probabilities

    rng = np.random.default_rng(11)
    for case in range(40):
        k = int(rng.integers(2, 13))
        images, rates = rng.uniform(4, 3000, k), rng.uniform(0.02, 0.9, k)
        if case % 3 == 0:  # near-ties
            rates[:] = rates[0] + rng.uniform(-0.01, 0.01, k)
        post = Posterior(tuple(f"c{i}" for i in range(k)), rates * images, (1 - rates) * images)
        exact = best_probabilities(post)
        assert exact.sum() == pytest.approx(1.0) and (exact >= 0).all()
        sampled = win_probabilities(posterior_draws(post, 200_000, rng))
        assert np.abs(exact - sampled).max() < 0.006, (case, exact, sampled)


def test_exact_p_best_gives_equal_arms_equal_shares() -> None:
    import numpy as np

    from learning.recommend.posterior import Posterior, best_probabilities

    for k in (1, 2, 3, 12):
        same = Posterior(tuple(f"c{i}" for i in range(k)), np.full(k, 1.6), np.full(k, 2.4))
        assert best_probabilities(same) == pytest.approx(np.full(k, 1 / k), abs=1e-9)
