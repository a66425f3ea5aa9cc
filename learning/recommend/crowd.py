"""The crowd prior: other users' pooled picks as a weak prior for a user's cold start. Pure.

Per keyword of the prompt, the pooled (keyword, checkpoint) evidence of the users who share
becomes pseudo-counts added to the user's own posterior: each checkpoint keeps the crowd's
selection rate, and the keyword's pseudo-images — `crowd_prior_images` in all, spread over the
checkpoints as the crowd saw them, at most `crowd_arm_cap` on one — are scaled by the fade
n / (n + own), own = the user's long-run reviewed images for that keyword over the pool. So the
prior is worth at most 3 images per checkpoint (about one 20-image review over a pool of six) to a
user who never used the keyword, half that once their own images for it reach 40, and little after
a few reviews. The fade reads the long-run evidence, not the one restarted after a
change of taste: a restart (which keeps 4 images per checkpoint of the old evidence) does not bring
the crowd back. A keyword whose faded prior is worth less than `MIN_PRIOR_IMAGES` gets none.

The crowd moves the posterior means and the sampling only, never the evidence weight of the
confidence: a crowd prior alone never makes a batch single (learning.recommend.policies.adaptive).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from learning.models import ArmStat
from learning.recommend.types import CrowdEvidence, PolicyConfig

MIN_PRIOR_IMAGES = 1.0  # a keyword's faded prior worth less than this is dropped (not "in use")


def fade(own_images: float, prior_images: float) -> float:
    """How much of the crowd prior is left after `own_images` of the user's own reviewed images."""
    if prior_images <= 0:
        return 0.0
    return prior_images / (prior_images + max(own_images, 0.0))


def crowd_prior(crowd: CrowdEvidence, keywords: Sequence[str], pool: Sequence[str],
                config: PolicyConfig) -> dict[tuple[str, str], ArmStat]:
    """(keyword, checkpoint) → pseudo-counts (shown, selected) of the crowd prior; empty: none."""
    prior: dict[tuple[str, str], ArmStat] = {}
    for keyword in dict.fromkeys(keywords):
        cells = {arm: stat for arm in pool if (stat := crowd.pooled.get((keyword, arm))) is not None and stat.shown > 0}
        exposure = sum(stat.shown for stat in cells.values())
        if exposure <= 0:
            continue
        own = sum(max(stat.shown, 0.0) for arm in pool if (stat := crowd.own_long_run.get((keyword, arm))) is not None)
        left = fade(own, config.crowd_prior_images)
        shown = {arm: left * min(config.crowd_prior_images * stat.shown / exposure, config.crowd_arm_cap)
                 for arm, stat in cells.items()}
        if sum(shown.values()) < MIN_PRIOR_IMAGES:
            continue
        for arm, stat in cells.items():
            rate = min(max(stat.selected / stat.shown, 0.0), 1.0)
            prior[(keyword, arm)] = ArmStat(shown[arm], shown[arm] * rate)
    return prior


def prior_images(prior: Mapping[tuple[str, str], ArmStat]) -> float:
    """What a crowd prior is worth, in images: its best-supplied keyword's pseudo-images (the
    keywords saw the same images, so they are not added up)."""
    per_keyword: dict[str, float] = {}
    for (keyword, _), stat in prior.items():
        per_keyword[keyword] = per_keyword.get(keyword, 0.0) + stat.shown
    return max(per_keyword.values(), default=0.0)
