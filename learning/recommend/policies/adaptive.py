"""The adaptive policy: Bayesian posteriors, confidence from P(best) and evidence, Thompson allocation.

Confidence answers "may the next batch go to the recommended checkpoint alone?": the posterior
probability that it is the best for these keywords, measured beyond chance (0 = no idea,
1 = certain), times how much evidence it has relative to the batch being planned
(`evidence_weight`). P(best) alone is near 1 after 2/2 against 0/3 and 0/3; the weight keeps one
reviewed batch from reading "high", so a user who keeps picking one checkpoint passes through the
recommended + backup stage. With no evidence at all (and no crowd prior) a batch is split evenly over
the pool (pool order takes the remainder); from the first evidence on (or from the start under a
crowd prior, learning.recommend.crowd), images are spread by Thompson sampling
over the whole pool: each image slot goes to the winner of one posterior draw, so a promising
checkpoint late in the pool gets tried and a clearly worse one fades out on its own.
"""

from __future__ import annotations

import math

import numpy as np

from learning.recommend.allocation import even_split, order_by, raise_to_floors
from learning.recommend.crowd import crowd_prior
from learning.recommend.posterior import (
    Posterior, best_probabilities, evidence_images, posterior_draws, posteriors_with_and_without,
)
from learning.recommend.types import Plan, PolicyConfig, PolicyInput, RecommendRequest


def plan_adaptive(inp: PolicyInput) -> Plan:
    """Quick → best mean; confident at standard+ → single; middle → favourite + backup; else Thompson."""
    req, config = inp.req, inp.config
    prior = crowd_prior(inp.crowd, req.keywords, req.pool, config) if inp.crowd else None
    # `own`: the user's evidence alone. A crowd prior moves the means and the sampling, never the evidence weight.
    posterior, own = posteriors_with_and_without(req.keywords, req.pool, inp.evidence, inp.base, config.prior_strength,
                                                 prior)
    wins = best_probabilities(posterior)
    means = posterior.mean
    best_index = int(means.argmax())
    best = req.pool[best_index]
    images = evidence_images(own, config.prior_strength)
    clear = beyond_chance(float(wins[best_index]), len(req.pool))
    confidence = clear * evidence_weight(float(images[best_index]), req.count, config.evidence_scale)
    hint = next_stage(best, clear, float(images[best_index]), confidence, req, config)
    scores = dict(zip(req.pool, means.round(4).tolist()))
    # priority: the recommended first, then by chance of being best, then by expected rate
    ranked = [req.pool[i] for i in np.lexsort((-means, -wins))]
    ranked.remove(best)
    ranked.insert(0, best)

    if req.quick:
        return Plan("quick", best, confidence, {best: req.count}, scores, hint, prior)
    if req.tier != "draft" and confidence > config.single_threshold:
        return Plan("single", best, confidence, {best: req.count}, scores, hint, prior)
    if req.tier != "draft" and confidence > config.backup_threshold and len(ranked) > 1:
        return Plan("recommended_backup", best, confidence, _with_backup(req.count, ranked, wins, req.pool, config),
                    scores, hint, prior)
    if not images.any() and prior is None:  # a cold start: nothing to sample from yet
        return Plan("explore", best, confidence, even_split(req.count, req.pool), scores, hint)
    thompson = _thompson_counts(_slot_draws(posterior, req.count, config.thompson_sharpening, inp), req.pool)
    floors = _explore_floors(req, ranked, confidence, config)
    return Plan("explore", best, confidence, order_by(raise_to_floors(thompson, floors), ranked), scores, hint,
                prior)


def beyond_chance(p_best: float, arms: int) -> float:
    """P(best) rescaled so that knowing nothing is 0 and certainty is 1, whatever the pool size.

    Raw P(best) starts at 1/k: with a pool of three, a cold start would read 0.33 — "medium" —
    and skip exploring. A pool of one has nothing to choose: full confidence.
    """
    if arms <= 1:
        return 1.0
    chance = 1.0 / arms
    return max(0.0, (p_best - chance) / (1.0 - chance))


def next_stage(best: str, clear: float, images: float, confidence: float, req: RecommendRequest,
               config: PolicyConfig) -> str:
    """What would move the plan to the next stage: more evidence for `best` (how many more reviewed
    images like these), or a clearer winner (when even endless evidence would not do)."""
    if req.quick or len(req.pool) == 1:
        return ""
    if confidence > config.single_threshold:
        return "" if req.tier != "draft" else "drafts always compare several checkpoints"
    stage, target = (("recommended + backup", config.backup_threshold) if confidence <= config.backup_threshold
                     else ("the favourite alone", config.single_threshold))
    if req.tier == "draft":
        stage += " at the standard tier"
    if clear <= target:
        return (f"{stage} needs a clearer favourite: {best} is ahead by a chance of being best "
                f"{clear:.0%} beyond chance, more than {target:.0%} is needed")
    # confidence = clear × n / (n + s·count) > target  ⇔  n > target·s·count / (clear − target)
    needed = target * config.evidence_scale * req.count / (clear - target)
    more = max(1, math.floor(needed - images) + 1)
    return f"{stage} after about {more} more reviewed images of {best} like these"


def evidence_weight(images: float, count: int, scale: float) -> float:
    """How far evidence of `images` reviewed images backs a batch of `count`: 0 without any,
    1/2 at `scale × count` images, towards 1 with more."""
    if scale == 0:
        return 1.0
    return images / (images + scale * count)


def _slot_draws(posterior: Posterior, count: int, sharpening: float, inp: PolicyInput) -> np.ndarray:
    """One posterior draw per image slot, from the posterior sharpened `sharpening` times (same
    means, concentration × sharpening): plain Thompson sampling (1) keeps sending a batch's images
    to checkpoints that are merely not yet ruled out; sharpened, it still tries every plausible one
    but wastes fewer images (bench/bench_policies.py, docs/BENCHMARKS.md)."""
    sharp = Posterior(posterior.arms, posterior.alpha * sharpening, posterior.beta * sharpening)
    return posterior_draws(sharp, count, np.random.default_rng(inp.rng.getrandbits(64)))


def _thompson_counts(slot_draws: np.ndarray, pool: tuple[str, ...]) -> dict[str, int]:
    """One image per posterior draw, to that draw's best checkpoint."""
    counts = np.bincount(slot_draws.argmax(axis=1), minlength=len(pool))
    return {arm: int(n) for arm, n in zip(pool, counts) if n}


def _explore_floors(req: RecommendRequest, ranked: list[str], confidence: float, config: PolicyConfig) -> dict[str, int]:
    """The least each top-ranked checkpoint must get so the batch still compares several.

    Low confidence: `min_explore` checkpoints. A draft batch after learning: the favourite and a
    runner-up that is never starved entirely (`min_backup_share`, at least one image).
    """
    width = config.min_explore if confidence <= config.backup_threshold else config.min_draft_checkpoints
    width = min(width, len(ranked), req.count)
    floors = {arm: 1 for arm in ranked[:width]}
    if width >= 2:
        floors[ranked[1]] = max(1, min(round(req.count * config.min_backup_share), req.count - width + 1))
    return floors


def _with_backup(
    count: int, ranked: list[str], wins: np.ndarray, pool: tuple[str, ...], config: PolicyConfig
) -> dict[str, int]:
    """Favourite and runner-up, split by their chances of being best; the favourite gets more."""
    best, backup = ranked[0], ranked[1]
    p_best, p_backup = wins[pool.index(best)], wins[pool.index(backup)]
    backup_share = max(p_backup / (p_best + p_backup), config.min_backup_share) if p_best + p_backup else 0.5
    cap = max(1, (count - 1) // 2) if count > 1 else 0  # strictly fewer than the favourite from 3 images on
    backup_n = min(max(round(count * backup_share), 1), cap)
    return {arm: n for arm, n in ((best, count - backup_n), (backup, backup_n)) if n}
