"""Which LoRA combination and which CFG each image of a batch gets, learnt from the user's picks.

Two more arm kinds (`learning.arms`) with the checkpoint's Bayesian model
(`learning.recommend.posterior`: per keyword a Beta centred on the user's base rate of the kind),
read from the prompt's best-informed keyword (`posterior_for`):

* `lora-combination`, per keyword × LoRA set with strengths, under the family: the candidates
  are "none", each relevant LoRA alone and each pair, at `LORA_STRENGTH_LEVELS` (every LoRA of a
  set at the same level), vetoed LoRAs left out. Learning per whole set (not factored per LoRA)
  is what lets "A is good, A+B is bad" be learnt at all; `bench/bench_combinations.py` measures it.
* `cfg`, per keyword × checkpoint × CFG over the family's `CFG_LEVELS`; a checkpoint's posterior
  also takes the other checkpoints' evidence for the same CFG at `OTHER_CHECKPOINTS_WEIGHT` (a
  user's taste in CFG mostly carries over, and one checkpoint alone learns it slowly).

Explore draws each image's arm from the posterior (Thompson sampling, sharpened by
`DRAW_SHARPNESS`: the draws of a posterior three times as sure, which explores less and kept the
bench's selections higher), so a batch spends its images where the chance of being the best is,
without growing; an image explores its LoRA set or its CFG, not both (`draw_cells`). Quick mode
and refines take the
best posterior mean. With no evidence every candidate ties and the order decides: today's
Auto-LoRA set first (the centrally matched LoRAs together at their relevance strength; a LoRA
matched only on a rare tag is tested, never applied untested), then the rest.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from learning.arms import cfg_arm, combination_arm, lora_set_label
from learning.models import ArmStat
from learning.recommend.posterior import Posterior, combined_posterior, posteriors_with_and_without, prior_rate
from learning.recommend.types import CrowdPrior, PolicyConfig

log = logging.getLogger(__name__)

LORA_STRENGTH_LEVELS = (0.6, 0.8)
MAX_COMBINED_LORAS = 2  # LoRAs in one tested combination
MAX_CANDIDATE_LORAS = 2  # relevant LoRAs whose sets are tested (more arms than a batch can compare)
CFG_LEVELS: dict[str, tuple[float, ...]] = {"sd15": (5.0, 7.0, 9.0), "sdxl": (5.0, 6.0, 8.0)}
OTHER_CHECKPOINTS_WEIGHT = 0.5
DRAW_SHARPNESS = 3.0
PRIOR_STRENGTH = PolicyConfig().prior_strength  # the prior's weight in images, as for checkpoints
FACTORED_PRIOR_IMAGES = 4.0  # what a set's LoRAs' own evidence may move its prior by, in images

LoraSet = tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class ArmChoice:
    """A learnt choice for one prompt: the best candidate, its expected rate and its evidence."""

    best: str  # the arm name (learning.arms)
    expected: float
    images: float  # reviewed images behind the best arm's posterior
    reason: str


def candidate_sets(today: Sequence[tuple[str, float]], vetoed: frozenset[str] = frozenset(),
                   weak: frozenset[str] = frozenset()) -> list[LoraSet]:
    """The LoRA sets worth testing: today's Auto-LoRA set first (its `weak` matches left out:
    one rare tag hit is no reason to apply a LoRA before any evidence; "none" first if nothing
    is left), then each relevant LoRA alone at every strength level and each pair at the lowest
    (two LoRAs at full strength fight), then none; vetoed LoRAs never appear."""
    kept = [(name, strength) for name, strength in today if name not in vetoed]
    names = list(dict.fromkeys(name for name, _ in kept))[:MAX_CANDIDATE_LORAS]
    sets: list[LoraSet] = [tuple((name, strength) for name, strength in kept if name not in weak)]
    for size in range(1, min(MAX_COMBINED_LORAS, len(names)) + 1):
        for group in itertools.combinations(names, size):
            levels = LORA_STRENGTH_LEVELS if size == 1 else LORA_STRENGTH_LEVELS[:1]
            sets += [tuple((name, level) for name in group) for level in levels]
    sets.append(())
    unique: dict[str, LoraSet] = {}
    for lora_set in sets:
        unique.setdefault(lora_set_label(lora_set), lora_set)
    return list(unique.values())


def cfg_candidates(family: str, default: float) -> tuple[float, ...]:
    """The CFG values Explore spreads over: the tier's default first, then the family's levels."""
    return tuple(dict.fromkeys((default, *CFG_LEVELS.get(family, ()))))


def posterior_for(keywords: Sequence[str], arms: Sequence[str], evidence: Mapping[tuple[str, str], ArmStat],
                  base: ArmStat) -> Posterior:
    """The posterior of the prompt's best-informed keyword (most reviewed images over these
    arms). Subject words shared by styles that want different settings ("castle" in anime and
    photo prompts) would average those wants away in the checkpoints' precision-weighted mix; the
    word the user keeps typing (the style) keeps them apart. Chosen over that mix and over the
    keyword whose arms differ most (noise wins that contest) by bench/bench_combinations.py.
    Without any evidence: the prior (every keyword ties)."""
    stems = list(dict.fromkeys(keywords)) or [""]
    per_keyword = [combined_posterior([stem], arms, evidence, base, PRIOR_STRENGTH) for stem in stems]
    return max(per_keyword, key=lambda p: float((p.alpha + p.beta).sum()))


def set_posterior(keywords: Sequence[str], family: str, sets: Sequence[LoraSet],
                  evidence: Mapping[tuple[str, str], ArmStat], lora_evidence: Mapping[tuple[str, str], ArmStat],
                  base: ArmStat) -> Posterior:
    """The LoRA sets' posterior (`posterior_for`), each set's prior moved towards what its LoRAs
    earned in any set: up to `FACTORED_PRIOR_IMAGES` pseudo-images at the rate of its worst LoRA's
    `lora` evidence (per keyword, smoothed by the usual prior; LoRAs without any, such as explicit
    tags left out of `lora_evidence`, do not count). The whole-set arms keep "A is
    good, A+B is bad" learnable; the per-LoRA evidence, shared by every set holding a LoRA, tells
    all of a disliked LoRA's strengths and pairs apart from "none" at once instead of one by one
    (bench/bench_combinations.py, "never likes LoRAs, one matches by name": 75 → 80 % of the
    oracle, 30 seeds, ± 4 noise). `lora_evidence`: (keyword, LoRA name) → counts of the `lora`
    arm kind."""
    arms = combination_arms(family, sets)
    p0 = prior_rate(base)
    stems = list(dict.fromkeys(keywords)) or [""]
    per_keyword = []
    for stem in stems:
        shown = np.zeros((1, len(arms)))
        selected = np.zeros((1, len(arms)))
        for index, lora_set in enumerate(sets):
            found = (lora_evidence.get((stem, name)) for name, _ in lora_set)
            stats = [stat for stat in found if stat is not None and stat.shown > 0]
            if not stats:
                continue
            rates = [(max(stat.selected, 0.0) + PRIOR_STRENGTH * p0) / (stat.shown + PRIOR_STRENGTH) for stat in stats]
            shown[0, index] = min(FACTORED_PRIOR_IMAGES, min(stat.shown for stat in stats))
            selected[0, index] = shown[0, index] * min(rates)
        pseudo = CrowdPrior((stem,), tuple(arms), shown, selected)
        per_keyword.append((posteriors_with_and_without([stem], arms, evidence, base, PRIOR_STRENGTH, pseudo)))
    return max(per_keyword, key=lambda pair: float((pair[1].alpha + pair[1].beta).sum()))[0]


def best_arm(posterior: Posterior, kind: str) -> ArmChoice:
    """The arm with the best posterior mean (the first on a tie: candidate order decides)."""
    index = int(np.argmax(posterior.mean))
    images = float(posterior.alpha[index] + posterior.beta[index] - PRIOR_STRENGTH)
    expected = float(posterior.mean[index])
    reason = (f"best {kind} {posterior.arms[index]}: expected rate {expected:.2f} from {images:.0f} reviewed images"
              if images > 0.5 else f"no {kind} evidence yet: {posterior.arms[index]} (today's default)")
    return ArmChoice(posterior.arms[index], expected, max(images, 0.0), reason)


def draw_arms(posterior: Posterior, count: int, rng: np.random.Generator) -> list[int]:
    """Thompson sampling: per image, the index of the arm that wins one posterior draw."""
    if count <= 0:
        return []
    draws = rng.beta(posterior.alpha * DRAW_SHARPNESS, posterior.beta * DRAW_SHARPNESS,
                     size=(count, len(posterior.arms)))
    return draws.argmax(axis=1).tolist()


def draw_cells(set_posterior: Posterior, cfg_posterior: Posterior | None, count: int,
               rng: np.random.Generator) -> list[tuple[int, int | None]]:
    """Explore's (LoRA set, CFG) indices for `count` images of one checkpoint: each drawn by
    Thompson sampling, but one image explores one setting at most: where both draws leave their
    posterior's best, one of the two (at random) goes back to its best. Exploring both at once
    multiplies the two losses and muddles both arms' evidence (bench/bench_combinations.py:
    "likes A with X" 82 → 86 % of the oracle, its best found in 83 → 97 % of runs).
    `cfg_posterior` None: the CFG is not learnt (indices None)."""
    sets = draw_arms(set_posterior, count, rng)
    if cfg_posterior is None:
        return [(s, None) for s in sets]
    best_set, best_cfg = int(np.argmax(set_posterior.mean)), int(np.argmax(cfg_posterior.mean))
    cells: list[tuple[int, int | None]] = []
    for s, c in zip(sets, draw_arms(cfg_posterior, count, rng)):
        if s != best_set and c != best_cfg:
            s, c = (best_set, c) if rng.random() < 0.5 else (s, best_cfg)
        cells.append((s, c))
    return cells


def combination_arms(family: str, sets: Sequence[LoraSet]) -> list[str]:
    return [combination_arm(family, lora_set) for lora_set in sets]


def cfg_arms(checkpoint: str, values: Sequence[float]) -> list[str]:
    return [cfg_arm(checkpoint, value) for value in values]


def cfg_evidence(checkpoint: str, checkpoints: Sequence[str], values: Sequence[float],
                 evidence: Mapping[tuple[str, str], ArmStat]) -> dict[tuple[str, str], ArmStat]:
    """(keyword, cfg arm of `checkpoint`) → its own evidence plus the other checkpoints' for the
    same CFG at `OTHER_CHECKPOINTS_WEIGHT`; `evidence` holds the cfg arms of all `checkpoints`."""
    keywords = {keyword for keyword, _ in evidence}
    found: dict[tuple[str, str], ArmStat] = {}
    for value in values:
        own = cfg_arm(checkpoint, value)
        for keyword in keywords:
            total = [0.0, 0.0, 0.0]
            for other in checkpoints:
                stat = evidence.get((keyword, cfg_arm(other, value)))
                if stat is None:
                    continue
                weight = 1.0 if other == checkpoint else OTHER_CHECKPOINTS_WEIGHT
                total = [total[0] + weight * stat.shown, total[1] + weight * stat.selected,
                         total[2] + weight * stat.rejected]
            if total[0] > 0:
                found[(keyword, own)] = ArmStat(*total)
    return found
