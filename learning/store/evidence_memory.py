"""A stand-in for the store's evidence reads, in memory and without DuckDB, for bench/bench_policies.py and tests.

It is not the store's in-memory copy of the aggregates (that is `aggregates_memory`): it is fed
whole reviews (`record_review`: a batch's done images with their final states), and answers
`arm_stats`, `base_rate` and `total_reviews` like the store would for that history. It models the
store where each batch is reviewed once, in one go, and never clicked on again; it has no later
clicks, late images, imports or global view. tests/learning/test_store_agreement.py holds it to
the store's numbers on such histories.

Decay follows the store's rule (`learning.store.decay.decay_factor`): evidence from a review
`age` reviews ago weighs 0.5 ** (age / half_life). Each accumulator is decayed lazily (value
plus the review it was last brought up to date at), so recording and reading stay
O(arms × keywords).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from learning.models import DEFAULT_USER, ArmKind, ArmStat
from learning.store.decay import decay_factor
from learning.store.taste_changes import TasteChanges


@dataclass(frozen=True)
class ReviewedImage:
    """One image of a reviewed batch, as the feedback left it."""

    checkpoint: str
    selected: bool
    rejected: bool = False
    loras: tuple[str, ...] = ()
    arms: tuple[tuple[str, str], ...] = ()  # further (arm_kind, arm) rows it feeds (learning.arms)


@dataclass
class _Decayed:
    shown: float = 0.0
    selected: float = 0.0
    rejected: float = 0.0
    as_of: int = 0  # review count the values are decayed to


class InMemoryEvidence:
    """Per-user decayed (keyword, arm) counts plus per-user totals, fed one review at a time."""

    def __init__(self, half_life_reviews: float | None = None) -> None:
        self.half_life_reviews = half_life_reviews
        self._stats: dict[tuple[str, ArmKind, str, str], _Decayed] = defaultdict(_Decayed)
        self._totals: dict[tuple[str, ArmKind], _Decayed] = defaultdict(_Decayed)
        self._reviews: dict[str, int] = {}
        self.taste_changes = TasteChanges(half_life_reviews)

    def record_review(self, keywords: Sequence[str], images: Iterable[ReviewedImage], user_id: str = DEFAULT_USER) -> None:
        """Count one reviewed batch: every image once per keyword (keyword × image pairs)."""
        now = self._reviews[user_id] = self.total_reviews(user_id) + 1
        stems = list(dict.fromkeys(keywords))
        for image in images:
            loras = dict.fromkeys(image.loras)  # a LoRA named twice counts once, as in the store
            for kind, arm in [("checkpoint", image.checkpoint), *(("lora", lora) for lora in loras), *image.arms]:
                self._add(self._totals[(user_id, kind)], image, now)
                for stem in stems:
                    self._add(self._stats[(user_id, kind, stem, arm)], image, now)
                    self.taste_changes.add(user_id, kind, stem, arm, now, 1.0, float(image.selected))

    def arm_stats(
        self, user_id: str, kind: ArmKind, keywords: Sequence[str], arms: Sequence[str]
    ) -> dict[tuple[str, str], ArmStat]:
        now = self.total_reviews(user_id)
        found = {}
        for stem in keywords:
            for arm in arms:
                cell = self._stats.get((user_id, kind, stem, arm))
                if cell is not None:
                    found[(stem, arm)] = self._read(cell, now)
        return found

    def arm_evidence(
        self, user_id: str, kind: ArmKind, keywords: Sequence[str], arms: Sequence[str]
    ) -> dict[tuple[str, str], ArmStat]:
        """`arm_stats` with changes of taste followed (`learning.store.taste_changes`)."""
        return self.taste_changes.evidence(user_id, kind, keywords, arms, self.arm_stats(user_id, kind, keywords, arms),
                                           self.total_reviews(user_id))

    def base_rate(self, user_id: str, kind: ArmKind) -> ArmStat:
        cell = self._totals.get((user_id, kind))
        return self._read(cell, self.total_reviews(user_id)) if cell else ArmStat(0.0, 0.0, 0.0)

    def total_reviews(self, user_id: str) -> int:
        return self._reviews.get(user_id, 0)

    def _weight(self, age: int) -> float:
        return 1.0 if self.half_life_reviews is None else decay_factor(age, self.half_life_reviews)

    def _read(self, cell: _Decayed, now: int) -> ArmStat:
        w = self._weight(now - cell.as_of)
        return ArmStat(cell.shown * w, cell.selected * w, cell.rejected * w)

    def _add(self, cell: _Decayed, image: ReviewedImage, now: int) -> None:
        w = self._weight(now - cell.as_of)
        cell.shown = cell.shown * w + 1.0
        cell.selected = cell.selected * w + float(image.selected)
        cell.rejected = cell.rejected * w + float(image.rejected)
        cell.as_of = now
