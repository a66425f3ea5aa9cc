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

from collections.abc import Sequence

import numpy as np

from learning.recommend.posterior import count_matrix
from learning.recommend.types import CrowdEvidence, CrowdPrior, PolicyConfig

MIN_PRIOR_IMAGES = 1.0  # a keyword's faded prior worth less than this is dropped (not "in use")


def fade(own_images: float, prior_images: float) -> float:
    """How much of the crowd prior is left after `own_images` of the user's own reviewed images."""
    if prior_images <= 0:
        return 0.0
    return prior_images / (prior_images + max(own_images, 0.0))


def crowd_prior(crowd: CrowdEvidence, keywords: Sequence[str], pool: Sequence[str],
                config: PolicyConfig) -> CrowdPrior | None:
    """The crowd prior's pseudo-counts for these keywords × checkpoints, or None: no prior.
    As arrays: it runs on every plan of a user with a crowd prior."""
    stems = list(dict.fromkeys(keywords))
    if not stems or not pool:
        return None
    seen, picked = count_matrix(stems, pool, crowd.pooled)
    seen = np.maximum(seen, 0.0)
    own, _ = count_matrix(stems, pool, crowd.own_long_run)
    exposure = seen.sum(axis=1, keepdims=True)
    left = np.array([[fade(images, config.crowd_prior_images)] for images in np.maximum(own, 0.0).sum(axis=1)])
    spread = config.crowd_prior_images * np.divide(seen, exposure, out=np.zeros_like(seen), where=exposure > 0)
    shown = left * np.minimum(spread, config.crowd_arm_cap)
    rate = np.clip(np.divide(picked, seen, out=np.zeros_like(seen), where=seen > 0), 0.0, 1.0)
    shown[shown.sum(axis=1) < MIN_PRIOR_IMAGES] = 0.0
    if not shown.any():
        return None
    return CrowdPrior(tuple(stems), tuple(pool), shown, shown * rate)
