"""LoRA combinations and CFG learnt per keyword, against today's single-LoRA Auto-LoRA, on simulated users.

Run: `python -m bench.bench_combinations [--seeds N] [--batches N]`. Each simulated user reviews
`batches` Explore batches of 20 (checkpoints allocated by the adaptive policy in every policy but
the oracle; the policies differ in the LoRA sets and CFG the images get):

* `today`: Auto-LoRA as it is (`choose_loras` with the per-LoRA preference blended in,
  `vary_loras` across checkpoint groups, the tier's CFG);
* `learnt`: `learning.recommend.combinations` as the app runs it — each image's LoRA set and CFG
  Thompson-drawn from the per-keyword posteriors of the `lora-combination` (`set_posterior`) and
  `cfg` arms, one setting explored per image (`draw_cells`);
* `learnt, both settings drawn per image`: the same with the set and CFG drawn independently (the
  draws before `draw_cells`), for the side-by-side;
* `settings oracle`: the adaptive checkpoint allocation with every image at its checkpoint's true
  best LoRA set and CFG (what perfect LoRA/CFG learning reaches);
* `oracle`: every image on the truly best (checkpoint, LoRA set, CFG).

Reported, means over seeds (± two standard errors): expected selections per batch as % of the
oracle, and as % of the settings oracle; and the share of runs whose recommendation after the
last batch (Quick mode's LoRA set and CFG for each style's prompt, on the best checkpoint) is the
user's true best: its true rate within `TRUE_BEST_SHARE` of the best's (sets the user is
indifferent to tie); and what the learning left after the last batch: one more Explore batch and
one Quick-mode batch per style (not reviewed), their expected selections as % of the oracle's.
"""

from __future__ import annotations

import argparse
import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from bench.simulated_users import SUBJECTS, SUBJECTS_PER_PROMPT
from learning.arms import cfg_arm, combination_arm
from learning.keywords import parse_prompt
from learning.lora import choose_loras, vary_loras
from learning.models import DEFAULT_USER, LoraInfo
from learning.recommend import combinations as combos
from learning.recommend.planner import RecommendRequest, lora_preferences, recommend
from learning.store.evidence_memory import InMemoryEvidence, ReviewedImage

BATCH = 20
FAMILY = "sdxl"
DEFAULT_CFG = 6.0  # the sdxl draft tier's CFG (comfy.workflow)
POOL = ("ckX", "ckY", "ckZ")
LEARNT_BEFORE = "learnt, both settings drawn per image"  # the draws before `combinations.draw_cells`
POLICIES = ("today", LEARNT_BEFORE, "learnt", "settings oracle", "oracle")
CFG_SENSITIVITY = 0.4  # a CFG 1 away from the liked one costs ~30 % of the selections, 2 away ~60 %
TRUE_BEST_SHARE = 0.97  # a recommendation this close to the best rate is the best (ties: sets a user is indifferent to)
STRENGTH_SENSITIVITY = 1.5  # a LoRA at 0.6 where 0.8 is liked costs 30 %
CATALOG = (
    LoraInfo("anime_style_xl", "sdxl", tags=("anime", "1girl"), trigger_words=("anime style",), tag_shares=(0.7, 0.3)),
    LoraInfo("anime_lineart_xl", "sdxl", tags=("anime", "lineart"), trigger_words=("lineart",), tag_shares=(0.6, 0.4)),
    LoraInfo("film_grain_xl", "sdxl", tags=("film grain", "portrait"), trigger_words=("film grain",),
             tag_shares=(0.8, 0.2)),
    LoraInfo("watercolor_wash_xl", "sdxl", tags=("watercolor", "painting"), trigger_words=("watercolor",),
             tag_shares=(0.7, 0.3)),
)
LoraSet = combos.LoraSet


@dataclass(frozen=True)
class Taste:
    """One style: the user's rate per checkpoint (no LoRA, best CFG), how a LoRA set scales it
    (by its names joined with '+', sorted; `other_sets` for sets not listed), less for each LoRA
    away from `best_strength`, and the CFG they like."""

    keyword: str
    checkpoints: dict[str, float]
    sets: dict[str, float]
    other_sets: float
    best_cfg: float
    best_strength: float = 0.8

    def rate(self, checkpoint: str, lora_set: LoraSet, cfg: float) -> float:
        names = "+".join(sorted({name for name, _ in lora_set}))
        factor = 1.0 if not lora_set else self.sets.get(names, self.other_sets)
        for _, strength in lora_set:
            factor *= 1.0 - STRENGTH_SENSITIVITY * abs(strength - self.best_strength)
        return float(min(0.95, self.checkpoints[checkpoint] * factor / (1.0 + CFG_SENSITIVITY * (cfg - self.best_cfg) ** 2)))


@dataclass(frozen=True)
class Scenario:
    name: str
    tastes: tuple[Taste, ...]  # prompts cycle through these


A, B = "anime_style_xl", "anime_lineart_xl"
SCENARIOS = (
    Scenario("likes A with X, dislikes A+B", (Taste(
        "anime", {"ckX": 0.3, "ckY": 0.2, "ckZ": 0.15},
        {A: 2.4, B: 0.9},
        other_sets=0.3, best_cfg=DEFAULT_CFG),)),
    Scenario("CFG 5 for anime, 8 for photo", (
        Taste("anime", {"ckX": 0.3, "ckY": 0.25, "ckZ": 0.2}, {}, other_sets=1.0, best_cfg=5.0),
        Taste("photo", {"ckX": 0.2, "ckY": 0.35, "ckZ": 0.2}, {}, other_sets=1.0, best_cfg=8.0))),
    Scenario("never likes LoRAs", (Taste(
        "portrait", {"ckX": 0.35, "ckY": 0.25, "ckZ": 0.2}, {}, other_sets=0.35, best_cfg=DEFAULT_CFG),)),
    Scenario("never likes LoRAs, one matches by name", (Taste(
        "watercolor", {"ckX": 0.35, "ckY": 0.25, "ckZ": 0.2}, {}, other_sets=0.35, best_cfg=DEFAULT_CFG),)),
)

Cell = tuple[str, LoraSet, float]  # (checkpoint, LoRA set, CFG) of one image


@dataclass(frozen=True)
class RunResult:
    pct_of_oracle: float  # over the reviewed batches
    best_found: bool  # the final recommendation is the true best LoRA set and CFG
    explore_after: float  # one more Explore batch per style after the last, % of the oracle's
    quick_after: float  # one Quick batch per style after the last, % of the oracle's


def _prompt(taste: Taste, rng: random.Random) -> str:
    return " ".join((taste.keyword, *rng.sample(SUBJECTS, SUBJECTS_PER_PROMPT)))


def _today_sets(stems: Sequence[str], parsed, evidence: InMemoryEvidence) -> list:
    names = [info.name for info in CATALOG]
    found = evidence.arm_stats(DEFAULT_USER, "lora", stems, names)
    liked = lora_preferences(stems, names, found, evidence.base_rate(DEFAULT_USER, "lora"))
    prefs = {name: score for name, score in liked.items() if name in {arm for _, arm in found}}
    return choose_loras(parsed, CATALOG, FAMILY, auto=True, preference=prefs)


def _as_set(choices) -> LoraSet:
    return tuple((c.name, round(c.strength, 2)) for c in choices)


def _candidates(parsed) -> tuple[list[LoraSet], tuple[float, ...]]:
    """What the learnt policy may offer for this prompt: sets from today's relevant LoRAs, CFGs."""
    today = _as_set(choose_loras(parsed, CATALOG, FAMILY, auto=True))
    return combos.candidate_sets(today), combos.cfg_candidates(FAMILY, DEFAULT_CFG)


def _learnt_choice(stems, sets, cfgs, evidence, checkpoint: str) -> tuple[LoraSet, float]:
    """Quick mode's choice: the best posterior mean of each kind."""
    arms = combos.combination_arms(FAMILY, sets)
    combo = combos.best_arm(_set_posterior(stems, sets, evidence), "LoRA set")
    cfg_names = combos.cfg_arms(checkpoint, cfgs)
    cfg = combos.best_arm(_cfg_posterior(stems, cfgs, evidence, checkpoint), "CFG")
    return sets[arms.index(combo.best)], cfgs[cfg_names.index(cfg.best)]


def _set_posterior(stems, sets, evidence):
    arms = combos.combination_arms(FAMILY, sets)
    names = list(dict.fromkeys(name for lora_set in sets for name, _ in lora_set))
    return combos.set_posterior(stems, FAMILY, sets, evidence.arm_stats(DEFAULT_USER, "lora-combination", stems, arms),
                                evidence.arm_stats(DEFAULT_USER, "lora", stems, names),
                                evidence.base_rate(DEFAULT_USER, "lora-combination"))


def _cfg_posterior(stems, cfgs, evidence, checkpoint: str):
    every = [arm for c in POOL for arm in combos.cfg_arms(c, cfgs)]
    found = combos.cfg_evidence(checkpoint, POOL, cfgs, evidence.arm_stats(DEFAULT_USER, "cfg", stems, every))
    return combos.posterior_for(stems, combos.cfg_arms(checkpoint, cfgs), found, evidence.base_rate(DEFAULT_USER, "cfg"))


def _learnt_cells(stems, sets, cfgs, allocation: dict[str, int], evidence, rng: np.random.Generator,
                  one_setting_per_image: bool = True) -> list[Cell]:
    """The app's Explore cells (`combinations.draw_cells`), or with `one_setting_per_image` off the
    draws before it (each image's set and CFG drawn independently), for the side-by-side."""
    combo_post = _set_posterior(stems, sets, evidence)
    cells: list[Cell] = []
    for checkpoint, n in allocation.items():
        cfg_post = _cfg_posterior(stems, cfgs, evidence, checkpoint)
        picks = (combos.draw_cells(combo_post, cfg_post, n, rng) if one_setting_per_image
                 else zip(combos.draw_arms(combo_post, n, rng), combos.draw_arms(cfg_post, n, rng)))
        cells += [(checkpoint, sets[s], cfgs[c]) for s, c in picks]
    return cells


def _batch_cells(policy: str, taste: Taste, parsed, evidence: InMemoryEvidence, policy_rng: random.Random,
                 draws: np.random.Generator, quick: bool = False) -> tuple[list[Cell], Cell]:
    """One batch's cells under `policy` (Explore, or Quick mode with `quick`), and the best cell."""
    stems = tuple(k.stem for k in parsed.keywords)
    sets, cfgs = _candidates(parsed)
    space = [(c, s, g) for c in POOL for s in sets for g in cfgs]
    best_cell = max(space, key=lambda cell: taste.rate(*cell))
    if policy == "oracle":
        return [best_cell] * BATCH, best_cell
    rec = recommend(RecommendRequest(stems, POOL, "draft", BATCH, quick=quick),
                    evidence.arm_stats(DEFAULT_USER, "checkpoint", stems, POOL),
                    evidence.base_rate(DEFAULT_USER, "checkpoint"), policy="adaptive", rng=policy_rng)
    allocation = {c: n for c, n in rec.allocation.items() if n > 0}
    if policy == "today":
        variations = vary_loras(_today_sets(stems, parsed, evidence), len(allocation))
        cells = [(c, _as_set(v), DEFAULT_CFG) for (c, n), v in zip(allocation.items(), variations) for _ in range(n)]
    elif policy == "settings oracle":
        cells = [max(((c, s, g) for s in sets for g in cfgs), key=lambda cell: taste.rate(*cell))
                 for c, n in allocation.items() for _ in range(n)]
    elif quick:
        cells = [(c, *_learnt_choice(stems, sets, cfgs, evidence, c)) for c, n in allocation.items() for _ in range(n)]
    else:
        cells = _learnt_cells(stems, sets, cfgs, allocation, evidence, draws, one_setting_per_image=policy == "learnt")
    return cells, best_cell


def run_session(scenario: Scenario, policy: str, seed: int, batches: int) -> RunResult:
    evidence = InMemoryEvidence(100.0)
    prompts, policy_rng = random.Random(seed), random.Random(seed + 1)
    clicks, draws = np.random.default_rng(seed + 2), np.random.default_rng(seed + 3)
    got = best_possible = 0.0
    last: dict[str, tuple[float, float]] = {}  # style → (rate of the recommendation, best rate)
    for b in range(batches):
        taste = scenario.tastes[b % len(scenario.tastes)]
        parsed = parse_prompt(_prompt(taste, prompts))
        stems = tuple(k.stem for k in parsed.keywords)
        cells, best_cell = _batch_cells(policy, taste, parsed, evidence, policy_rng, draws)
        got += sum(taste.rate(*cell) for cell in cells)
        best_possible += BATCH * taste.rate(*best_cell)
        reviewed = []
        for checkpoint, lora_set, cfg in cells:
            chosen = bool(clicks.random() < taste.rate(checkpoint, lora_set, cfg))
            reviewed.append(ReviewedImage(checkpoint, chosen, loras=tuple(n for n, _ in lora_set), arms=(
                ("lora-combination", combination_arm(FAMILY, lora_set)), ("cfg", cfg_arm(checkpoint, cfg)))))
        evidence.record_review(stems, reviewed)
        if policy == "today":
            chosen_set, chosen_cfg = _as_set(_today_sets(stems, parsed, evidence)), DEFAULT_CFG
        elif policy.startswith("learnt"):
            chosen_set, chosen_cfg = _learnt_choice(stems, *_candidates(parsed), evidence, best_cell[0])
        else:
            chosen_set, chosen_cfg = best_cell[1], best_cell[2]
        checkpoint = best_cell[0]
        last[taste.keyword] = (taste.rate(checkpoint, chosen_set, chosen_cfg), taste.rate(*best_cell))
    found = all(chosen >= TRUE_BEST_SHARE * best for chosen, best in last.values())
    after = {}
    for quick in (False, True):  # one unreviewed batch per style, with what the last batch left
        share = []
        for taste in scenario.tastes:
            cells, best_cell = _batch_cells(policy, taste, parse_prompt(_prompt(taste, prompts)), evidence, policy_rng,
                                            draws, quick=quick)
            share.append(sum(taste.rate(*cell) for cell in cells) / (BATCH * taste.rate(*best_cell)))
        after[quick] = 100.0 * statistics.fmean(share)
    return RunResult(100.0 * got / best_possible, found, after[False], after[True])


def _mean_and_noise(values: Sequence[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    noise = 2.0 * statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else 0.0
    return mean, noise


def table(seeds: int, batches: int, run: Callable[[Scenario, str, int, int], RunResult] = run_session) -> list[str]:
    lines = ["| scenario | policy | selected % of oracle (± 2 SE) | % of the settings oracle "
             "| final recommendation is the true best | after: Explore batch % of oracle (± 2 SE) "
             "| after: Quick batch % of oracle (± 2 SE) |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for scenario in SCENARIOS:
        results = {policy: [run(scenario, policy, seed, batches) for seed in range(seeds)] for policy in POLICIES}
        settings_oracle = statistics.fmean(r.pct_of_oracle for r in results["settings oracle"])
        for policy, runs in results.items():
            mean, noise = _mean_and_noise([r.pct_of_oracle for r in runs])
            found = 100.0 * sum(r.best_found for r in runs) / len(runs)
            explore = "{:.1f} ± {:.1f}".format(*_mean_and_noise([r.explore_after for r in runs]))
            quick = "{:.1f} ± {:.1f}".format(*_mean_and_noise([r.quick_after for r in runs]))
            lines.append(f"| {scenario.name} | {policy} | {mean:.1f} ± {noise:.1f} | {100.0 * mean / settings_oracle:.1f} "
                         f"| {found:.0f} % | {explore} | {quick} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--batches", type=int, default=30)
    args = parser.parse_args(argv)
    print(f"## LoRA combinations and CFG — {args.seeds} seeds × {args.batches} Explore batches of {BATCH}")
    print("\n".join(table(args.seeds, args.batches)))


if __name__ == "__main__":
    main()
