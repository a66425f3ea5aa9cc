"""The Bayesian model behind the adaptive policy and LoRA preferences.

Each (keyword, arm) gets a Beta posterior whose prior is centred on the user's own base rate
(so a never-tried arm ranks like an average arm of this user, not like a 50 % one). A prompt's
keywords are combined per arm as the precision-weighted mean of their posterior means, with the
spread of the best-informed keyword: the keywords saw the same images, so their evidence is not
added up (a 6-keyword prompt is not six times as sure), and a keyword without evidence sits at the
prior with little weight instead of diluting what the others learned. A prompt made only of
unseen keywords ("anime girl" after a photorealistic history) gets the prior alone: no transfer.
Chosen over the plain mean of posteriors and over pooled counts by `bench/bench_policies.py`
(docs/BENCHMARKS.md), including a scenario where a new style shares subject words with an old one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from learning.models import ArmStat
from learning.recommend.types import CrowdPrior

_RATE_BOUNDS = (0.01, 0.99)
GRID_POINTS = 512  # quadrature points for P(best), over where the arms' posteriors have mass
_GRID_SPREAD = 8.0  # ... that is, within this many standard deviations of some arm's mean


@dataclass(frozen=True)
class Posterior:
    """Beta(alpha, beta) per arm, in the order of `arms`."""

    arms: tuple[str, ...]
    alpha: np.ndarray
    beta: np.ndarray

    @property
    def mean(self) -> np.ndarray:
        return self.alpha / (self.alpha + self.beta)


def prior_rate(base: ArmStat) -> float:
    """The user's own selection rate over all arms, lightly smoothed towards 1/2."""
    rate = (max(base.selected, 0.0) + 1.0) / (max(base.shown, 0.0) + 2.0)
    return float(np.clip(rate, *_RATE_BOUNDS))


def combined_posterior(
    keywords: Sequence[str],
    arms: Sequence[str],
    evidence: Mapping[tuple[str, str], ArmStat],
    base: ArmStat,
    prior_strength: float,
) -> Posterior:
    """One Beta per arm for this prompt, combined over keywords as the module doc explains."""
    return posteriors_with_and_without(keywords, arms, evidence, base, prior_strength, None)[0]


def posteriors_with_and_without(
    keywords: Sequence[str],
    arms: Sequence[str],
    evidence: Mapping[tuple[str, str], ArmStat],
    base: ArmStat,
    prior_strength: float,
    pseudo: CrowdPrior | None,
) -> tuple[Posterior, Posterior]:
    """`combined_posterior` with pseudo-counts per keyword × arm added to the prior of each keyword's
    Beta (the crowd prior, learning.recommend.crowd, for these keywords and arms in this order), and
    without them (the same object when there are none), from one read of the evidence."""
    stems = list(dict.fromkeys(keywords)) or [""]  # no keywords: the prior alone
    shown, selected = count_matrix(stems, arms, evidence)
    # decayed counts can dip a hair below 0 after an undo (unselect subtracts at today's weight
    # what a select added at an older one): clamp into 0 <= selected <= shown
    shown = np.maximum(shown, 0.0)
    selected = np.minimum(np.maximum(selected, 0.0), shown)
    p0 = prior_rate(base)
    a = prior_strength * p0 + selected
    b = prior_strength * (1.0 - p0) + (shown - selected)
    without = _combined(arms, a, b)
    if pseudo is None:
        return without, without
    if pseudo.keywords != tuple(stems) or pseudo.arms != tuple(arms):
        raise ValueError("the pseudo-counts are for other keywords or arms than the posterior's")
    return _combined(arms, a + pseudo.selected, b + (pseudo.shown - pseudo.selected)), without


def _combined(arms: Sequence[str], a: np.ndarray, b: np.ndarray) -> Posterior:
    """Keywords × arms Betas combined per arm: precision-weighted mean, the best-informed spread."""
    means = a / (a + b)
    variances = means * (1.0 - means) / (a + b + 1.0)
    precision = 1.0 / variances
    mean = (precision * means).sum(axis=0) / precision.sum(axis=0)
    variance = variances.min(axis=0)
    # moment match; ≥ prior_strength > 0 because mean(1-mean) is concave between the keywords' means
    concentration = mean * (1.0 - mean) / variance - 1.0
    return Posterior(tuple(arms), mean * concentration, (1.0 - mean) * concentration)


def count_matrix(stems: Sequence[str], arms: Sequence[str],
                 counts: Mapping[tuple[str, str], ArmStat]) -> tuple[np.ndarray, np.ndarray]:
    """keywords × arms arrays of (shown, selected), 0 where `counts` has nothing."""
    found = [[counts.get((stem, arm)) for arm in arms] for stem in stems]
    shown = np.array([[stat.shown if stat else 0.0 for stat in row] for row in found], dtype=float)
    selected = np.array([[stat.selected if stat else 0.0 for stat in row] for row in found], dtype=float)
    return shown, selected


def evidence_images(posterior: Posterior, prior_strength: float) -> np.ndarray:
    """Per arm, the reviewed images behind its posterior (its concentration beyond the prior's):
    for one keyword exactly its decayed shown count, for several the best-informed keyword's.
    Zero (to rounding) without evidence."""
    images = posterior.alpha + posterior.beta - prior_strength
    return np.where(images > 1e-9, images, 0.0)


def posterior_draws(posterior: Posterior, draws: int, rng: np.random.Generator) -> np.ndarray:
    """`draws` × arms samples of the arms' selection rates."""
    return rng.beta(posterior.alpha, posterior.beta, size=(draws, len(posterior.arms)))


def win_probabilities(samples: np.ndarray) -> np.ndarray:
    """Per arm, the share of posterior draws in which it is the best (the Monte Carlo estimate
    that `best_probabilities` computes exactly; kept as the tests' reference)."""
    winners = samples.argmax(axis=1)
    return np.bincount(winners, minlength=samples.shape[1]) / samples.shape[0]


def best_probabilities(posterior: Posterior) -> np.ndarray:
    """Per arm, the posterior probability that it has the highest rate: ∫ f_i(x) Π_{j≠i} F_j(x) dx.

    Computed by quadrature (midpoint rule on `GRID_POINTS` points spanning every arm's mass, each
    density normalised on the grid), so it is deterministic, equal arms get equal shares, and a
    call costs tens of microseconds where 2,000 Monte Carlo draws × 12 arms cost ~1 ms.
    """
    a, b = posterior.alpha, posterior.beta
    k = len(a)
    if k == 1:
        return np.ones(1)
    mean = a / (a + b)
    sd = np.sqrt(mean * (1.0 - mean) / (a + b + 1.0))
    lo = max(float((mean - _GRID_SPREAD * sd).min()), 0.0)
    hi = min(float((mean + _GRID_SPREAD * sd).max()), 1.0)
    x = lo + (np.arange(GRID_POINTS) + 0.5) * ((hi - lo) / GRID_POINTS)
    log_norm = np.array([math.lgamma(ai + bi) - math.lgamma(ai) - math.lgamma(bi) for ai, bi in zip(a, b)])
    log_pdf = (a - 1.0)[:, None] * np.log(x) + (b - 1.0)[:, None] * np.log1p(-x) + log_norm[:, None]
    pdf = np.exp(log_pdf - log_pdf.max(axis=1, keepdims=True))
    pdf /= pdf.sum(axis=1, keepdims=True)  # each arm's mass on the grid, summing to 1
    cdf = np.cumsum(pdf, axis=1) - 0.5 * pdf  # P(X_j < x) at each midpoint
    # Π_{j≠i} F_j in logs (a sum less one's own term; F clipped away from 0 on both sides of that)
    log_cdf = np.log(np.maximum(cdf, 1e-300))
    others = np.exp(log_cdf.sum(axis=0, keepdims=True) - log_cdf)
    p = (pdf * others).sum(axis=1)
    total = p.sum()
    return p / total if total > 0 else np.full(k, 1.0 / k)
