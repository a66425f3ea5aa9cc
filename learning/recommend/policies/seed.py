"""The seed rule, kept exactly as first specified so the bench can measure what replaced it.

Per keyword: rate = selected/shown (0.5 without data), w = shown/(shown+10),
score = (1-w)*0.5 + w*rate; a checkpoint's score is the mean over the prompt's keywords;
confidence = min(keyword × image pairs seen / 100, 1).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from statistics import fmean

from learning.recommend.allocation import apportion, even_split, order_by
from learning.models import ArmStat
from learning.recommend.types import Plan, PolicyInput, RecommendRequest

_EXPLORE_WIDTH = 3
_RECOMMENDED_SHARE = 0.7
_SINGLE = 0.5
_BACKUP = 0.3


def seed_scores(req: RecommendRequest, evidence: Mapping[tuple[str, str], ArmStat]) -> dict[str, float]:
    """Mean over keywords of the shrunk-towards-1/2 selection rate, per checkpoint."""
    return {arm: _mean(_keyword_score(evidence.get((kw, arm))) for kw in req.keywords) for arm in req.pool}


def seed_confidence(req: RecommendRequest, evidence: Mapping[tuple[str, str], ArmStat]) -> float:
    pairs = sum(stat.shown for (kw, arm), stat in evidence.items() if kw in req.keywords and arm in req.pool)
    return min(pairs / 100.0, 1.0)


def plan_seed(inp: PolicyInput) -> Plan:
    """The seed strategy: single / 70-30 / the pool's first three, drafts always the first three."""
    req = inp.req
    scores = seed_scores(req, inp.evidence)
    ranked = sorted(req.pool, key=lambda arm: -scores[arm])  # stable: ties keep pool order
    best = ranked[0]
    confidence = seed_confidence(req, inp.evidence)
    if req.quick:
        return Plan("quick", best, confidence, {best: req.count}, scores)
    if req.tier != "draft" and confidence > _SINGLE:
        return Plan("single", best, confidence, {best: req.count}, scores)
    if req.tier != "draft" and confidence > _BACKUP and len(ranked) > 1:
        allocation = apportion(req.count, {best: _RECOMMENDED_SHARE, ranked[1]: 1.0 - _RECOMMENDED_SHARE})
        return Plan("recommended_backup", best, confidence, allocation, scores)
    allocation = even_split(req.count, req.pool[:_EXPLORE_WIDTH])
    return Plan("explore", best, confidence, order_by(allocation, ranked), scores)


def _keyword_score(stat: ArmStat | None) -> float:
    shown = stat.shown if stat else 0.0
    rate = stat.selected / shown if stat and shown > 0 else 0.5
    weight = shown / (shown + 10.0)
    return (1.0 - weight) * 0.5 + weight * rate


def _mean(values: Iterable[float]) -> float:
    items = list(values)
    return fmean(items) if items else 0.5
