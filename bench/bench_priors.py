"""Cross-user priors: does a new user's cold start get better from the crowd's pooled picks?

Run: `python -m bench.bench_priors [--seeds N] [--batches N] [--crowd N]`. Per seed, a crowd of
`--crowd` simulated users (taste: `clear_winner`'s, bench/simulated_users.py) each reviews 20
batches planned by the adaptive policy (no prior); their evidence is pooled as the store pools it
(`learning.store.crowd_pool.CrowdSnapshot`: the new user's own rows out, at least two contributors
per cell). Then a new user runs `--batches` batches, with the crowd prior and without it (the
baseline, same seeds, same run), for three tastes: the crowd's (`matches`), the opposite one (the
crowd's favourite is their worst, their favourite one the crowd ranks low: `opposite`), and
another style sharing only subject words with the crowd's prompts (`other_style`). Reported, means
over seeds: batches until the recommended checkpoint is the truly best, batches until ≥ 50 % of a
batch is on it, expected selections per batch over the first 5 batches, % of oracle; then the cost:
`recommend()` with and without a crowd prior, the pool's read for one prompt, and rebuilding the
pool from DuckDB (`preference_stats` of sharing users, through the store).
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import replace

from bench.bench_policies import BATCH, FIRST_BATCHES, RunResult, latency_ms, run_session
from bench.simulated_users import POOL6, POOL12, SCENARIOS, SUBJECTS, Scenario, Style
from learning.models import ArmStat
from learning.recommend.planner import CrowdEvidence, PolicyConfig, RecommendRequest, default_config, recommend
from learning.store.crowd_pool import CrowdSnapshot, Row
from learning.store.evidence_memory import InMemoryEvidence
from learning.store.preference_store import PreferenceStore

CROWD_BATCHES = 20
NEW_USER = "newcomer"
CROWD_STYLE = next(s for s in SCENARIOS if s.name == "clear_winner").styles[0]  # ckpt02 0.6, ckpt05 0.25, 0.1
CASES = (
    Scenario("matches", POOL6, (CROWD_STYLE,)),
    Scenario("opposite", POOL6, (Style(CROWD_STYLE.keyword, {"ckpt04": 0.6, "ckpt02": 0.03}, 0.12),)),
    Scenario("other_style", POOL6, (Style("anime", {"ckpt06": 0.6, "ckpt02": 0.1}, 0.12),)),
)


def crowd_snapshot(seed: int, members: int, config: PolicyConfig) -> CrowdSnapshot:
    """`members` users of the crowd's taste, 20 reviewed batches each, pooled as the store pools them."""
    evidence = InMemoryEvidence(config.half_life_reviews)
    crowd = Scenario("crowd", POOL6, (CROWD_STYLE,))
    users = [f"crowd{i}" for i in range(members)]
    for i, user in enumerate(users):
        run_session(crowd, "adaptive", 1000 * (seed + 1) + i, CROWD_BATCHES, config, evidence=evidence, user_id=user)
    keywords = (CROWD_STYLE.keyword, *SUBJECTS)
    rows: list[Row] = [(user, keyword, arm, stat.shown, stat.selected)
                       for user in users
                       for (keyword, arm), stat in evidence.arm_stats(user, "checkpoint", keywords, POOL6).items()]
    return CrowdSnapshot.of(rows, taken_at=0.0)


def mean_result(runs: Sequence[RunResult]) -> RunResult:
    return RunResult(*(statistics.fmean(getattr(r, name) for r in runs) for name in RunResult.__dataclass_fields__))


def compare(case: Scenario, seeds: int, batches: int, members: int, config: PolicyConfig) -> tuple[RunResult, RunResult]:
    """(with the crowd prior, without it) for a new user of this case's taste, means over seeds."""
    with_prior, without = [], []
    for seed in range(seeds):
        pool = crowd_snapshot(seed, members, config)
        read = lambda keywords, arms, pool=pool: pool.pooled_for(NEW_USER, keywords, arms)  # noqa: E731
        with_prior.append(run_session(case, "adaptive", seed, batches, config, user_id=NEW_USER, crowd=read))
        without.append(run_session(case, "adaptive", seed, batches, config, user_id=NEW_USER))
    return mean_result(with_prior), mean_result(without)


def recommend_latency_ms(crowd: CrowdEvidence | None, calls: int = 2000) -> tuple[float, float]:
    """p50 / p95 of one cold-start recommend() for 6 keywords × 12 checkpoints, with or without a prior."""
    keywords = ("fantasy", "portrait", "woman", "city", "night", "detailed")
    req = RecommendRequest(keywords, POOL12, "standard", BATCH)
    timings = []
    for i in range(calls):
        t0 = time.perf_counter()
        recommend(req, {}, ArmStat(0.0, 0.0), rng=random.Random(i), crowd=crowd)
        timings.append((time.perf_counter() - t0) * 1e3)
    q = statistics.quantiles(timings, n=20)
    return q[9], q[18]


def synthetic_rows(users: int) -> list[Row]:
    """Every user with evidence for every (keyword, checkpoint) of a 12-checkpoint pool."""
    keywords = ("fantasy", *SUBJECTS)
    return [(f"u{u}", keyword, arm, 20.0, 5.0 + (u + j) % 7) for u in range(users)
            for keyword in keywords for j, arm in enumerate(POOL12)]


def pooled_read_ms(snapshot: CrowdSnapshot, calls: int = 2000) -> tuple[float, float]:
    keywords = ("fantasy", "portrait", "woman", "city", "night", "detailed")
    timings = []
    for _ in range(calls):
        t0 = time.perf_counter()
        snapshot.pooled_for("u0", keywords, POOL12)
        timings.append((time.perf_counter() - t0) * 1e3)
    q = statistics.quantiles(timings, n=20)
    return q[9], q[18]


def store_rebuild_ms(users: int, repeats: int = 5) -> tuple[int, float]:
    """(rows, median ms) of rebuilding the crowd pool from DuckDB, `users` sharing users imported."""
    with PreferenceStore.open(":memory:", half_life=100.0) as store:
        by_user: dict[str, list[Row]] = {}
        for row in synthetic_rows(users):
            by_user.setdefault(row[0], []).append(row)
        for user, rows in by_user.items():
            out = io.StringIO()
            writer = csv.writer(out)
            writer.writerow(("keyword", "arm_kind", "arm", "shown", "selected", "rejected",
                             "w_shown", "w_selected", "w_rejected"))
            writer.writerows((kw, "checkpoint", arm, int(shown), int(sel), 0, shown, sel, 0.0)
                             for _, kw, arm, shown, sel in rows)
            store.import_preferences(user, out.getvalue().encode(), "csv")
            store.set_sharing(user, True)
        timings = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            store.rebuild_crowd_pool()
            timings.append((time.perf_counter() - t0) * 1e3)
        return sum(len(r) for r in by_user.values()), statistics.median(timings)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--crowd", type=int, default=8, help="users in the crowd")
    parser.add_argument("--prior-images", type=float, default=PolicyConfig().crowd_prior_images)
    parser.add_argument("--arm-cap", type=float, default=PolicyConfig().crowd_arm_cap)
    args = parser.parse_args(argv)
    config = replace(default_config("adaptive"), crowd_prior_images=args.prior_images, crowd_arm_cap=args.arm_cap)
    print(f"## Crowd priors — {args.seeds} seeds, a crowd of {args.crowd} × {CROWD_BATCHES} reviewed batches, "
          f"a new user's {args.batches} batches of {BATCH}; prior {args.prior_images:g} images per keyword, "
          f"≤ {args.arm_cap:g} per checkpoint; means over seeds (with prior / without)")
    print(f"| new user's taste | batches until recommended = best | batches to ≥50% on best | "
          f"selected per batch, first {FIRST_BATCHES} | % of oracle |")
    print("|---|---:|---:|---:|---:|")
    results = {case.name: compare(case, args.seeds, args.batches, args.crowd, config) for case in CASES}
    for name, (w, wo) in results.items():
        print(f"| {name} | {w.batches_to_best:.1f} / {wo.batches_to_best:.1f} | {w.batches_to_half:.1f} / "
              f"{wo.batches_to_half:.1f} | {w.early_selected:.2f} / {wo.early_selected:.2f} "
              f"(×{w.early_selected / wo.early_selected:.2f}) | {w.pct_of_oracle:.1f} / {wo.pct_of_oracle:.1f} |")
    (match, match_base), (opposite, opposite_base) = results["matches"], results["opposite"]
    sooner = match.batches_to_best < match_base.batches_to_best
    late = max(opposite.batches_to_best - opposite_base.batches_to_best, opposite.batches_to_half - opposite_base.batches_to_half)
    print(f"matching taste finds the best sooner: {'yes' if sooner else 'NO'} "
          f"({match.batches_to_best:.1f} vs {match_base.batches_to_best:.1f} batches); opposite taste at most one batch "
          f"later: {'yes' if late <= 1.0 else 'NO'} ({late:+.1f} batches, the worse of the two counts)")
    users = 200
    snapshot = CrowdSnapshot.of(synthetic_rows(users), taken_at=0.0)
    keywords = ("fantasy", "portrait", "woman", "city", "night", "detailed")
    prior = CrowdEvidence(snapshot.pooled_for("u0", keywords, POOL12), {})
    base_p50, base_p95 = recommend_latency_ms(None)
    p50, p95 = recommend_latency_ms(prior)
    learned_p50, learned_p95 = latency_ms("adaptive")
    read_p50, read_p95 = pooled_read_ms(snapshot)
    rows, rebuild = store_rebuild_ms(users)
    print("\n| cost, 6 keywords × 12 checkpoints, 2,000 calls | p50 ms | p95 ms |\n|---|---:|---:|")
    print(f"| recommend(), cold start, no crowd prior (baseline) | {base_p50:.3f} | {base_p95:.3f} |")
    print(f"| recommend(), cold start, crowd prior | {p50:.3f} | {p95:.3f} |")
    print(f"| recommend(), a user with 40 reviews, no crowd prior (bench_policies' row) | {learned_p50:.3f} | "
          f"{learned_p95:.3f} |")
    print(f"| the crowd pool's read for one prompt ({users} sharing users) | {read_p50:.4f} | {read_p95:.4f} |")
    print(f"crowd prior / cold baseline: p50 ×{p50 / base_p50:.2f}, p95 ×{p95 / base_p95:.2f}; crowd prior / "
          f"learned user: p50 ×{p50 / learned_p50:.2f}, p95 ×{p95 / learned_p95:.2f}; "
          f"rebuilding the pool from DuckDB ({users} users, {rows} rows, off the request path): {rebuild:.1f} ms median")


if __name__ == "__main__":
    main()
