"""Which checkpoints get the images of a batch, and why — the learning layer's planner.

Pure: evidence comes in as plain data (what `store.arm_stats` / `store.base_rate` return), a
`Recommendation` comes out, and the decision is logged as one line. The default policy is
"adaptive"; "seed" is the original rule and "uniform" the no-learning baseline, both kept for the
bench and for comparison in the app.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping, Sequence

from learning.models import ArmStat, Recommendation
from learning.recommend.policies.adaptive import plan_adaptive
from learning.recommend.policies.seed import plan_seed
from learning.recommend.policies.uniform import plan_uniform
from learning.recommend.posterior import combined_posterior
from learning.recommend.types import SEED_CONFIG, CrowdEvidence, Plan, PolicyConfig, PolicyInput, RecommendRequest

__all__ = ["FOLLOWS_TASTE_CHANGES", "POLICIES", "CrowdEvidence", "PolicyConfig", "RecommendRequest", "default_config",
           "lora_preferences", "recommend"]

log = logging.getLogger(__name__)

_POLICY_FNS: dict[str, Callable[[PolicyInput], Plan]] = {"seed": plan_seed, "adaptive": plan_adaptive, "uniform": plan_uniform}
POLICIES = tuple(_POLICY_FNS)
# Policies that read evidence with changes of taste followed (the evidence holders' `arm_evidence`,
# learning.store.taste_changes); the others read the plain decayed aggregates (`arm_stats`).
FOLLOWS_TASTE_CHANGES = frozenset({"adaptive"})


def default_config(policy: str) -> PolicyConfig:
    """The seed never forgets; the others use the tuned defaults."""
    return SEED_CONFIG if policy == "seed" else PolicyConfig()


def recommend(
    req: RecommendRequest,
    evidence: Mapping[tuple[str, str], ArmStat],
    base: ArmStat,
    *,
    policy: str = "adaptive",
    rng: random.Random | None = None,
    config: PolicyConfig | None = None,
    crowd: CrowdEvidence | None = None,
) -> Recommendation:
    """Plan one batch: mode, recommended checkpoint, confidence and images per checkpoint.

    `evidence` maps (keyword stem, checkpoint) to decayed counts, missing = no data; `base` is the
    user's decayed totals over all checkpoints; `crowd`, other users' pooled picks for a weak prior
    (the adaptive policy's; the others ignore it). Deterministic for a given `rng`.
    """
    if policy not in _POLICY_FNS:
        raise ValueError(f"unknown policy {policy!r}; choose one of {POLICIES}")
    plan = _POLICY_FNS[policy](PolicyInput(req, evidence, base, rng or random.Random(), config or default_config(policy),
                                           crowd))
    message = describe(plan, req.changed_keywords)
    log.info("recommend policy=%s prompt=%r: %s", policy, req.prompt, message)
    return Recommendation(
        mode=plan.mode,
        recommended=plan.recommended,
        confidence=round(plan.confidence, 4),
        allocation=plan.allocation,
        scores=plan.scores,
        checkpoints_to_test=list(plan.allocation),
        message=message,
        policy=policy,
        next_stage=plan.next_stage,
        evidence=evidence_table(req, evidence),
        crowd_prior=plan.crowd_prior.table() if plan.crowd_prior else {},
    )


def evidence_table(req: RecommendRequest, evidence: Mapping[tuple[str, str], ArmStat]) -> dict[str, dict[str, dict[str, float]]]:
    """keyword → checkpoint → {"selected", "shown"}: the evidence a plan was made from (pool order)."""
    table: dict[str, dict[str, dict[str, float]]] = {}
    for keyword in dict.fromkeys(req.keywords):
        row = {arm: {"selected": round(stat.selected, 2), "shown": round(stat.shown, 2)}
               for arm in req.pool if (stat := evidence.get((keyword, arm))) is not None}
        table[keyword] = row
    return table


def lora_preferences(
    keywords: Sequence[str],
    loras: Sequence[str],
    evidence: Mapping[tuple[str, str], ArmStat],
    base: ArmStat,
    config: PolicyConfig | None = None,
) -> dict[str, float]:
    """Per LoRA, the expected selection rate for these keywords (same model as checkpoints).

    `evidence` and `base` are the LoRA-kind counterparts (`store.arm_stats(user, "lora", ...)`).
    An unseen LoRA gets the user's base rate, so Auto-LoRA can rank by it without special cases.
    """
    if not loras:
        return {}
    posterior = combined_posterior(keywords, loras, evidence, base, (config or PolicyConfig()).prior_strength)
    return dict(zip(loras, posterior.mean.round(4).tolist()))


def describe(plan: Plan, changed_keywords: Sequence[str] = ()) -> str:
    """The one-line decision, e.g. "High confidence (0.83): epicrealismXL only"; when the user's
    picks for some keywords changed lately, or a crowd prior is in use, it says so."""
    level = "High" if plan.confidence > 0.5 else "Medium" if plan.confidence > 0.3 else "Low"
    head = f"{level} confidence ({plan.confidence:.2f})"
    if plan.mode in ("single", "quick"):
        line = f"{head}{', quick' if plan.mode == 'quick' else ''}: {plan.recommended} only"
    elif plan.mode == "recommended_backup":
        line = head + ": " + " + backup ".join(f"{arm} ×{n}" for arm, n in plan.allocation.items())
    else:
        spread = ", ".join(f"{arm} ×{n}" for arm, n in plan.allocation.items())
        line = f"{head}, exploring {len(plan.allocation)} checkpoints: [{spread}]"
    if changed_keywords:
        line += f"; your picks for {', '.join(repr(k) for k in changed_keywords)} changed: exploring again"
    if plan.crowd_prior:
        line += (f"; starting from other users' picks (a crowd prior worth {plan.crowd_prior.images:.0f} "
                 "images, fading as you review)")
    return line
