"""How many of a batch's images the user wants, per checkpoint policy, on simulated users.

Run: `python -m bench.bench_policies [--seeds N] [--batches N]`. For each scenario × policy it
reports, as means over seeds: expected selections as % of the oracle (which puts every image on
the truly best checkpoint), batches until ≥ 50 % of a batch is on the best checkpoint (counted
from the last change of taste; a run that never gets there counts as all remaining batches + 1),
and the share of images wasted on clearly worse checkpoints (rate ≤ 60 % of the best) after a
warm-up. Then the latency of `recommend()` for a 6-keyword prompt over 12 checkpoints, against the
previous Monte Carlo P(best) (2,000 draws) measured in the same run.

Session: batches of 20; the first third at the draft tier, then cycles of draft, standard,
standard (a draft grid followed by refined batches). Evidence decays with the policy's half-life,
exactly as the store applies it.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from bench.simulated_users import SCENARIOS, Scenario, prompt_keywords, review
from learning.store.evidence_memory import InMemoryEvidence, ReviewedImage
from learning.models import DEFAULT_USER, ArmStat, Tier
from learning.recommend.policies import adaptive
from learning.recommend.posterior import Posterior, posterior_draws, win_probabilities
from learning.recommend.planner import (
    FOLLOWS_TASTE_CHANGES, POLICIES, CrowdEvidence, PolicyConfig, RecommendRequest, default_config, recommend,
)

BATCH = 20
WARM_UP = 10
CLEARLY_WORSE = 0.6  # a checkpoint whose rate is at most this fraction of the best's
BENCH_POLICIES = (*POLICIES, "oracle")
FIRST_BATCHES = 5  # "early" selections: the mean over the first this many batches
# (keywords, pool) → other users' pooled evidence, as the store's crowd pool answers it
CrowdRead = Callable[[Sequence[str], Sequence[str]], Mapping[tuple[str, str], ArmStat]]


@dataclass(frozen=True)
class RunResult:
    pct_of_oracle: float
    batches_to_half: int
    wasted_share: float
    batches_to_best: float = 0.0  # until the recommended checkpoint is the truly best (same counting)
    early_selected: float = 0.0  # expected selections per batch over the first FIRST_BATCHES batches


def tier_at(batch: int, batches: int) -> Tier:
    if batch < batches // 3:
        return "draft"
    return "draft" if (batch - batches // 3) % 3 == 0 else "standard"


def run_session(
    scenario: Scenario, policy: str, seed: int, batches: int, config: PolicyConfig | None = None, *,
    evidence: InMemoryEvidence | None = None, user_id: str = DEFAULT_USER, crowd: CrowdRead | None = None,
) -> RunResult:
    """One simulated user, `batches` batches planned by `policy`, reviewed, fed back into `evidence`
    (a fresh one unless given: bench/bench_priors.py builds a crowd in one). `crowd`: other users'
    pooled evidence, for a crowd prior."""
    config = config or default_config("adaptive" if policy == "oracle" else policy)
    evidence = evidence if evidence is not None else InMemoryEvidence(config.half_life_reviews)
    prompts, policy_rng, clicks = random.Random(seed), random.Random(seed + 1), np.random.default_rng(seed + 2)
    got = best_possible = wasted = after_warm_up = early = 0.0
    reached: dict[int, int] = {}  # phase start → first batch (1-based, within the phase) ≥ 50 % on the best
    recommended_best: dict[int, int] = {}  # phase start → first batch whose recommendation is the best
    for b in range(batches):
        style = scenario.style_at(b, batches)
        best = style.best(scenario.pool)
        keywords = prompt_keywords(style, prompts)
        if policy == "oracle":
            allocation, recommended = {best: BATCH}, best
        else:
            req = RecommendRequest(keywords, scenario.pool, tier_at(b, batches), BATCH)
            read = evidence.arm_evidence if policy in FOLLOWS_TASTE_CHANGES else evidence.arm_stats
            stats = read(user_id, "checkpoint", keywords, scenario.pool)
            base = evidence.base_rate(user_id, "checkpoint")
            pooled = crowd(keywords, scenario.pool) if crowd else None
            prior = CrowdEvidence(pooled, evidence.arm_stats(user_id, "checkpoint", keywords, scenario.pool)) if pooled else None
            rec = recommend(req, stats, base, policy=policy, rng=policy_rng, config=config, crowd=prior)
            allocation, recommended = rec.allocation, rec.recommended
        selected = sum(n * style.rate(c) for c, n in allocation.items())
        got += selected
        early += selected if b < FIRST_BATCHES else 0.0
        best_possible += BATCH * style.rate(best)
        start = scenario.phase_start(b, batches)
        if allocation.get(best, 0) >= BATCH / 2:
            reached.setdefault(start, b - start + 1)
        if recommended == best:
            recommended_best.setdefault(start, b - start + 1)
        if b >= WARM_UP:
            after_warm_up += BATCH
            wasted += sum(n for c, n in allocation.items() if style.rate(c) <= CLEARLY_WORSE * style.rate(best))
        images = [ReviewedImage(c, chosen) for c, chosen in review(style, allocation, clicks)]
        evidence.record_review(keywords, images, user_id)
    last_start = scenario.phase_start(batches - 1, batches)
    return RunResult(
        pct_of_oracle=100.0 * got / best_possible,
        batches_to_half=reached.get(last_start, batches - last_start + 1),
        wasted_share=100.0 * wasted / after_warm_up if after_warm_up else 0.0,
        batches_to_best=recommended_best.get(last_start, batches - last_start + 1),
        early_selected=early / min(FIRST_BATCHES, batches),
    )


def summarise(
    scenario: Scenario, policy: str, seeds: int, batches: int, config: PolicyConfig | None = None
) -> RunResult:
    runs = [run_session(scenario, policy, seed, batches, config) for seed in range(seeds)]
    return RunResult(
        pct_of_oracle=statistics.fmean(r.pct_of_oracle for r in runs),
        batches_to_half=round(statistics.fmean(r.batches_to_half for r in runs)),
        wasted_share=statistics.fmean(r.wasted_share for r in runs),
    )


def monte_carlo_p_best(draws: int = 2000) -> Callable[[Posterior], np.ndarray]:
    """The previous P(best): the share of `draws` posterior draws each arm wins (the baseline)."""
    rng = np.random.default_rng(0)
    return lambda posterior: win_probabilities(posterior_draws(posterior, draws, rng))


def latency_ms(policy: str, calls: int = 2000, p_best: Callable[[Posterior], np.ndarray] | None = None) -> tuple[float, float]:
    """p50 / p95 of one recommend() call: 6 keywords × 12 checkpoints with a learned history.

    `p_best` replaces the adaptive policy's P(best) for the run (the Monte Carlo baseline)."""
    scenario = next(s for s in SCENARIOS if len(s.pool) == 12)
    evidence = InMemoryEvidence(100.0)
    rng, clicks = random.Random(7), np.random.default_rng(7)
    style = scenario.styles[0]
    for _ in range(40):  # a history: every keyword has data for every checkpoint
        keywords = prompt_keywords(style, rng)
        evidence.record_review(keywords, [ReviewedImage(c, s) for c, s in review(style, dict.fromkeys(scenario.pool, 2), clicks)])
    keywords = (style.keyword, "portrait", "woman", "city", "night", "detailed")
    req = RecommendRequest(keywords, scenario.pool, "standard", BATCH)
    stats = evidence.arm_stats(DEFAULT_USER, "checkpoint", keywords, scenario.pool)
    base = evidence.base_rate(DEFAULT_USER, "checkpoint")
    timings = []
    with _p_best_replaced(p_best):
        for i in range(calls):
            t0 = time.perf_counter()
            recommend(req, stats, base, policy=policy, rng=random.Random(i))
            timings.append((time.perf_counter() - t0) * 1e3)
    q = statistics.quantiles(timings, n=20)
    return q[9], q[18]


@contextlib.contextmanager
def _p_best_replaced(p_best: Callable[[Posterior], np.ndarray] | None) -> Iterator[None]:
    if p_best is None:
        yield
        return
    real = adaptive.best_probabilities
    adaptive.best_probabilities = p_best
    try:
        yield
    finally:
        adaptive.best_probabilities = real


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--half-life", type=float, default=PolicyConfig().half_life_reviews,
                        help="evidence half-life in reviews for adaptive (the store's setting)")
    args = parser.parse_args(argv)
    tuned = replace(default_config("adaptive"), half_life_reviews=args.half_life)
    print(f"## Checkpoint policies — {args.seeds} seeds × {args.batches} batches of {BATCH}, means over seeds,"
          f" adaptive half-life {args.half_life:g} reviews")
    print("| scenario | policy | selected % of oracle | batches to ≥50% on best | wasted after warm-up |")
    print("|---|---|---:|---:|---:|")
    for scenario in SCENARIOS:
        for policy in BENCH_POLICIES:
            r = summarise(scenario, policy, args.seeds, args.batches, tuned if policy == "adaptive" else None)
            print(f"| {scenario.name} | {policy} | {r.pct_of_oracle:.1f} | {r.batches_to_half} | {r.wasted_share:.1f}% |")
    seed_p50, seed_p95 = latency_ms("seed")
    mc_p50, mc_p95 = latency_ms("adaptive", p_best=monte_carlo_p_best())
    p50, p95 = latency_ms("adaptive")
    print("\n| recommend() latency, 6 keywords × 12 checkpoints, 2,000 calls | p50 ms | p95 ms |\n|---|---:|---:|")
    print(f"| seed | {seed_p50:.3f} | {seed_p95:.3f} |")
    print(f"| adaptive, Monte Carlo P(best) from 2,000 draws (the previous implementation, baseline) | {mc_p50:.3f} | {mc_p95:.3f} |")
    print(f"| adaptive, exact P(best) by quadrature | {p50:.3f} | {p95:.3f} |")
    print(f"adaptive / Monte Carlo baseline: p50 ×{p50 / mc_p50:.2f}, p95 ×{p95 / mc_p95:.2f}; "
          f"adaptive / seed: p50 ×{p50 / seed_p50:.1f}, p95 ×{p95 / seed_p95:.1f}; "
          f"p95 target ≤ 1 ms: {'met' if p95 <= 1.0 else 'NOT met'}")

if __name__ == "__main__":
    main()
