"""Simulated users for the policy bench: who likes which checkpoint for which style.

A user selects each image independently with a probability that depends on (style, checkpoint);
prompts are a style keyword plus subject words shared by all styles, so keyword evidence
overlaps between styles the way real prompts do. A scenario may change the user's taste halfway
(`drifted`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np

SUBJECTS = ("portrait", "woman", "man", "city", "forest", "night", "castle", "cat", "detailed", "lighting")
SUBJECTS_PER_PROMPT = 3


@dataclass(frozen=True)
class Style:
    """A family of prompts sharing one style keyword, and the user's selection rate per checkpoint."""

    keyword: str
    rates: dict[str, float]
    default_rate: float = 0.15  # for checkpoints not listed

    def rate(self, checkpoint: str) -> float:
        return self.rates.get(checkpoint, self.default_rate)

    def best(self, pool: tuple[str, ...]) -> str:
        return max(pool, key=self.rate)


@dataclass(frozen=True)
class Scenario:
    name: str
    pool: tuple[str, ...]
    styles: tuple[Style, ...]  # prompts cycle through these
    drifted: tuple[Style, ...] = field(default=())  # the styles from the second half on, if taste drifts

    def style_at(self, batch: int, batches: int) -> Style:
        styles = self.drifted if self.drifted and batch >= batches // 2 else self.styles
        return styles[batch % len(styles)]

    def phase_start(self, batch: int, batches: int) -> int:
        """First batch of the taste in force at `batch` (0, or the drift point)."""
        return batches // 2 if self.drifted and batch >= batches // 2 else 0


def prompt_keywords(style: Style, rng: random.Random) -> tuple[str, ...]:
    return (style.keyword, *rng.sample(SUBJECTS, SUBJECTS_PER_PROMPT))


def review(style: Style, allocation: dict[str, int], rng: np.random.Generator) -> list[tuple[str, bool]]:
    """The user's clicks on one batch: (checkpoint, selected) per image."""
    return [(ckpt, bool(rng.random() < style.rate(ckpt))) for ckpt, n in allocation.items() for _ in range(n)]


def _pool(size: int) -> tuple[str, ...]:
    return tuple(f"ckpt{i + 1:02d}" for i in range(size))


POOL6 = _pool(6)
POOL12 = _pool(12)

SCENARIOS: tuple[Scenario, ...] = (
    Scenario("clear_winner", POOL6, (Style("photorealistic", {"ckpt02": 0.6, "ckpt05": 0.25}, 0.1),)),
    Scenario("late_winner", POOL6, (Style("photorealistic", {"ckpt05": 0.6, "ckpt02": 0.25}, 0.1),)),
    Scenario("close_call", POOL6, (Style("watercolor", {"ckpt03": 0.5, "ckpt04": 0.45}, 0.15),)),
    Scenario(
        "cross_talk",
        POOL6,
        (Style("photorealistic", {"ckpt01": 0.6, "ckpt04": 0.1}, 0.15), Style("anime", {"ckpt04": 0.6, "ckpt01": 0.1}, 0.15)),
    ),
    Scenario(
        "taste_drift",
        POOL6,
        (Style("photorealistic", {"ckpt02": 0.6, "ckpt06": 0.15}, 0.12),),
        drifted=(Style("photorealistic", {"ckpt06": 0.6, "ckpt02": 0.15}, 0.12),),
    ),
    Scenario(
        "new_style",
        POOL6,
        (Style("photorealistic", {"ckpt01": 0.6, "ckpt04": 0.1}, 0.15),),
        drifted=(Style("anime", {"ckpt04": 0.6, "ckpt01": 0.1}, 0.15),),
    ),
    Scenario("picky", POOL6, (Style("cinematic", {"ckpt03": 0.15, "ckpt01": 0.06}, 0.03),)),
    Scenario("large_pool", POOL12, (Style("fantasy", {"ckpt10": 0.55, "ckpt03": 0.2}, 0.08),)),
)
