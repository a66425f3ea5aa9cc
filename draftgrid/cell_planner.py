"""Which (checkpoint, LoRA set, CFG) cells a batch fills, without growing it (pure).

The checkpoint allocation fixes how many images each checkpoint gets; this decides, per image,
its LoRA set and CFG from the learnt posteriors (`learning.recommend.combinations`): Explore draws
each image's arms (`draw_cells`: Thompson sampling, one setting explored per image), Quick gives
every image the best. Images of one checkpoint
with the same set and CFG form one group, and every group's chunk k shares seed `base_seed + k`
(`draftgrid.planning`), so cells are compared on the same noise. Explicit `<lora:...>` tags go to
every cell; a CFG the user set is the only CFG.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from comfy.models import LoraSpec
from draftgrid.planning import CheckpointGroup
from learning.lora import apply_triggers
from learning.models import LoraChoice
from learning.recommend import combinations as combos
from learning.recommend.posterior import Posterior


@dataclass(frozen=True)
class CellOptions:
    """What the cells may hold: candidate LoRA sets (automatic choices, in candidate order) and
    their posterior; CFG values per checkpoint with their posteriors (empty: the user's CFG)."""

    explicit: tuple[LoraChoice, ...]
    sets: tuple[tuple[LoraChoice, ...], ...]
    set_posterior: Posterior
    cfgs: tuple[float, ...]
    cfg_posteriors: Mapping[str, Posterior]


def plan_cells(allocation: Mapping[str, int], options: CellOptions, prompt: str, *, explore: bool,
               rng: np.random.Generator) -> list[CheckpointGroup]:
    """One group per (checkpoint, LoRA set, CFG) cell; counts sum to the allocation's."""
    groups: list[CheckpointGroup] = []
    for checkpoint, count in allocation.items():
        if count <= 0:
            continue
        cfg_posterior = options.cfg_posteriors.get(checkpoint) if options.cfgs else None
        picks = (combos.draw_cells(options.set_posterior, cfg_posterior, count, rng) if explore
                 else [_best(options.set_posterior, cfg_posterior)] * count)
        for (set_index, cfg_index), n in Counter(picks).items():
            chosen = options.explicit + options.sets[set_index]
            groups.append(CheckpointGroup(
                checkpoint=checkpoint, count=n,
                loras=tuple(LoraSpec(c.name, round(c.strength, 2)) for c in chosen),
                positive=apply_triggers(prompt, chosen),
                cfg=None if cfg_index is None else options.cfgs[cfg_index]))
    return groups


def _best(set_posterior: Posterior, cfg_posterior: Posterior | None) -> tuple[int, int | None]:
    """Quick mode's cell: the best posterior mean of each."""
    return int(np.argmax(set_posterior.mean)), None if cfg_posterior is None else int(np.argmax(cfg_posterior.mean))
