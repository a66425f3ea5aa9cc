"""Inputs of a checkpoint recommendation and the tunable knobs of the policies.

Kept apart from `recommend.py` so the policy modules can share them without importing the
dispatcher that imports them.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from learning.models import ArmStat, Tier

MAX_COUNT = 64


@dataclass(frozen=True)
class RecommendRequest:
    """What the planner knows about the batch to fill: the prompt's keyword stems and the pool."""

    keywords: tuple[str, ...]  # stems
    pool: tuple[str, ...]  # available checkpoints of the tier's pool, in pool order
    tier: Tier
    count: int  # images in the batch (1..64)
    quick: bool = False  # Quick mode: the single best
    prompt: str = ""  # for the log line only
    changed_keywords: tuple[str, ...] = ()  # keywords whose picks changed lately (said in the message)

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_COUNT:
            raise ValueError(f"count must be 1..{MAX_COUNT}, got {self.count}")
        if not self.pool:
            raise ValueError("the checkpoint pool is empty")
        if len(set(self.pool)) != len(self.pool):
            raise ValueError(f"the checkpoint pool has duplicates: {list(self.pool)}")


@dataclass(frozen=True)
class PolicyConfig:
    """Knobs of the adaptive policy, tuned with `python -m bench.bench_policies`.

    `half_life_reviews` is applied by whoever accumulates evidence (the store, or
    `InMemoryEvidence` in the bench); `None` means evidence never fades (the seed's behaviour).
    """

    prior_strength: float = 4.0  # pseudo-observations behind the user's own base rate
    single_threshold: float = 0.5  # confidence above which a non-draft batch uses one checkpoint
    backup_threshold: float = 0.3  # confidence above which a non-draft batch uses two
    thompson_sharpening: float = 2.0  # Thompson draws from the posterior with concentration × this
    min_explore: int = 3  # distinct checkpoints in an explore batch (or the pool size)
    min_draft_checkpoints: int = 2  # distinct checkpoints in every draft batch
    min_backup_share: float = 0.05  # least share of the second checkpoint where there is one
    # Confidence also weighs how much evidence the recommended checkpoint has, in images relative
    # to the batch being planned: n / (n + evidence_scale × count). One reviewed batch (at most
    # half of it on one checkpoint when it explores) weighs < 0.3, so a single-checkpoint batch
    # needs more than one; evidence worth a whole batch weighs 0.43 (recommended + backup at
    # most), about two batches' worth 0.6. Tuned on the seed's test cases through REST (8-image
    # standard batches and 20-image drafts, tests/app/test_learning_rest.py).
    evidence_scale: float = 1.3
    half_life_reviews: float | None = 100.0
    # The crowd prior (learning.recommend.crowd): other users' pooled picks for a keyword are worth
    # this many images in all while the user has none of their own, at most `crowd_arm_cap` on any
    # one checkpoint, and fade as n / (n + own images) with the user's own long-run images for it.
    # A cap of 6 or 10 made a user of the opposite taste find their favourite > 1 batch later than
    # without a prior; 3 keeps it at +0.6 (bench/bench_priors.py, docs/BENCHMARKS.md).
    crowd_prior_images: float = 40.0
    crowd_arm_cap: float = 3.0

    def __post_init__(self) -> None:
        if self.prior_strength <= 0:
            raise ValueError("prior_strength must be positive: the posterior needs a proper prior")
        if self.thompson_sharpening <= 0:
            raise ValueError("thompson_sharpening must be positive")
        if self.crowd_prior_images < 0 or self.crowd_arm_cap < 0:
            raise ValueError("crowd_prior_images and crowd_arm_cap must be >= 0")
        if self.evidence_scale < 0:
            raise ValueError("evidence_scale must be >= 0")
        if not 0 <= self.backup_threshold <= self.single_threshold <= 1:
            raise ValueError("thresholds must satisfy 0 <= backup_threshold <= single_threshold <= 1")


SEED_CONFIG = PolicyConfig(half_life_reviews=None)


@dataclass(frozen=True)
class Plan:
    """What a policy decides; `recommend()` adds the message and logs it."""

    mode: str  # "single", "recommended_backup", "explore" or "quick"
    recommended: str
    confidence: float
    allocation: dict[str, int]  # order = priority, recommended first when it gets images
    scores: dict[str, float]
    next_stage: str = ""  # what it would take to reach the next stage, readable by a user
    crowd_prior: CrowdPrior | None = None  # the crowd prior it used, if any


@dataclass(frozen=True, eq=False)
class CrowdPrior:
    """Pseudo-counts of a crowd prior per keyword × checkpoint (learning.recommend.crowd), as arrays:
    the posterior adds them as they are; the explanation lists the cells that have any."""

    keywords: tuple[str, ...]  # the prompt's distinct stems, in order
    arms: tuple[str, ...]
    shown: np.ndarray  # keywords × arms pseudo-images, 0 where the crowd has nothing
    selected: np.ndarray

    @property
    def images(self) -> float:
        """What it is worth: its best-supplied keyword's pseudo-images (the keywords saw the same
        images, so they are not added up)."""
        return float(self.shown.sum(axis=1).max())

    def cells(self) -> dict[tuple[str, str], ArmStat]:
        """(keyword, checkpoint) → pseudo-counts, for the cells that have any."""
        return {(kw, arm): ArmStat(n, picks) for kw, n_row, picks_row in zip(self.keywords, self.shown.tolist(),
                                                                              self.selected.tolist())
                for arm, n, picks in zip(self.arms, n_row, picks_row) if n > 0}

    def table(self) -> dict[str, dict[str, dict[str, float]]]:
        """keyword → checkpoint → {"selected", "shown"} rounded, as `Recommendation.evidence` is."""
        table: dict[str, dict[str, dict[str, float]]] = {}
        for (kw, arm), stat in self.cells().items():
            table.setdefault(kw, {})[arm] = {"selected": round(stat.selected, 2), "shown": round(stat.shown, 2)}
        return table


@dataclass(frozen=True)
class CrowdEvidence:
    """What a crowd prior is made from: the pooled decayed evidence of the other users who share
    (keyword, checkpoint) → counts, and the user's own long-run evidence (before any restart after a
    change of taste), against which the prior fades."""

    pooled: Mapping[tuple[str, str], ArmStat]
    own_long_run: Mapping[tuple[str, str], ArmStat]


@dataclass(frozen=True)
class PolicyInput:
    """Everything a policy may look at: the request, the evidence, randomness and the knobs."""

    req: RecommendRequest
    evidence: Mapping[tuple[str, str], ArmStat]  # (keyword stem, checkpoint) → decayed counts
    base: ArmStat  # the user's decayed totals over all checkpoints
    rng: random.Random
    config: PolicyConfig
    crowd: CrowdEvidence | None = None  # other users' pooled picks (the adaptive policy's weak prior)
