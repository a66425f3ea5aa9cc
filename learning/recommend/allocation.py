"""Pure helpers that turn shares into whole image counts.

Every policy ends with a dict checkpoint → images; these keep the invariants in one place:
counts are non-negative, sum to the batch size, and zero entries are dropped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def apportion(count: int, weights: Mapping[str, float]) -> dict[str, int]:
    """Split `count` images in proportion to `weights` (largest remainder; ties by order)."""
    names = list(weights)
    raw = np.asarray([max(weights[n], 0.0) for n in names], dtype=float)
    if raw.sum() <= 0:
        raw = np.ones(len(names))
    exact = raw / raw.sum() * count
    whole = np.floor(exact).astype(int)
    # stable sort: equal remainders keep the caller's order
    by_remainder = np.argsort(-(exact - whole), kind="stable")
    whole[by_remainder[: count - int(whole.sum())]] += 1
    return _nonzero(dict(zip(names, whole.tolist())))


def even_split(count: int, arms: Sequence[str]) -> dict[str, int]:
    """Equal shares, the earlier arms taking the remainder (20 over three → 7/7/6)."""
    return apportion(count, {arm: 1.0 for arm in arms})


def raise_to_floors(allocation: Mapping[str, int], floors: Mapping[str, int]) -> dict[str, int]:
    """Give every arm in `floors` at least its floor, taking images from the best-supplied others.

    Floors are honoured in their order while images remain to move; an arm is never taken below
    its own floor. Used to guarantee the runner-up and a minimum of distinct checkpoints.
    """
    result = dict(allocation)
    for arm, floor in floors.items():
        while result.get(arm, 0) < floor:
            donor = _richest_donor(result, floors, arm)
            if donor is None:
                break
            result[donor] -= 1
            result[arm] = result.get(arm, 0) + 1
    return _nonzero(result)


def order_by(allocation: Mapping[str, int], priority: Sequence[str]) -> dict[str, int]:
    """The same allocation with keys in `priority` order (recommended first)."""
    rank = {arm: i for i, arm in enumerate(priority)}
    return {arm: allocation[arm] for arm in sorted(allocation, key=lambda a: rank.get(a, len(rank)))}


def _richest_donor(allocation: Mapping[str, int], floors: Mapping[str, int], taker: str) -> str | None:
    spare = {arm: n - floors.get(arm, 0) for arm, n in allocation.items() if arm != taker}
    spare = {arm: s for arm, s in spare.items() if s > 0}
    return max(spare, key=spare.__getitem__) if spare else None


def _nonzero(allocation: Mapping[str, int]) -> dict[str, int]:
    return {arm: n for arm, n in allocation.items() if n > 0}
