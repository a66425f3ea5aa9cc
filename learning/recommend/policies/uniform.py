"""The uniform baseline: every checkpoint of the pool gets the same share, whatever was learned.

It measures what learning is worth; which checkpoints take the remainder rotates with the rng so
no pool position is favoured over many batches.
"""

from __future__ import annotations

from learning.recommend.allocation import even_split
from learning.recommend.policies.seed import seed_confidence, seed_scores
from learning.recommend.types import Plan, PolicyInput


def plan_uniform(inp: PolicyInput) -> Plan:
    pool = inp.req.pool
    start = inp.rng.randrange(len(pool))
    scores = seed_scores(inp.req, inp.evidence)
    best = max(pool, key=scores.__getitem__)
    allocation = even_split(inp.req.count, pool[start:] + pool[:start])
    return Plan("explore", best, seed_confidence(inp.req, inp.evidence), allocation, scores)
