"""What the ComfyUI servers offer, in the learning layer's terms.

Checkpoints with their model family, LoRAs with base model / tags / trigger words, samplers and
schedulers — read from the pool (object_info + /view_metadata) and kept until the inventory
changes, so planning a batch never waits on metadata requests. A split-file model (a diffusion
model with its text encoders and VAE, draftgrid/split_models.py) is a "checkpoint" of the catalog
under its name, like any other: planning, pools and learning treat it as one; its files ride on
the jobs (`with_split_models`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from comfy.models import ServerInventory
from comfy.pool import ServerPool
from draftgrid.split_models import split_models
from families.registry import registry
from families.split import SplitModel
from learning.lora import lora_info_from_metadata
from learning.models import LoraInfo
from learning.pools import PoolConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Catalog:
    """A consistent snapshot of the models every online server offers (their union)."""

    checkpoints: dict[str, str]  # name -> family (split-file models included, under their name)
    loras: tuple[LoraInfo, ...]
    samplers: tuple[str, ...]
    schedulers: tuple[str, ...]
    inventory: ServerInventory
    split_models: Mapping[str, SplitModel] = field(default_factory=dict)  # name -> its files

    def families(self) -> list[str]:
        """The registry families the servers have a checkpoint of, most checkpoints first (ties in
        registry order)."""
        names = registry().names
        counts = {family: sum(1 for f in self.checkpoints.values() if f == family) for family in names}
        return sorted((f for f in names if counts[f]), key=lambda f: (-counts[f], names.index(f)))


async def read_catalog(pool: ServerPool, pools: PoolConfig) -> Catalog:
    """Build a catalog from the pool's current inventories and (cached) model metadata."""
    inventory = pool.inventory_union()
    servers = pool.inventories()
    ckpt_meta, lora_meta, diffusion_meta = await asyncio.gather(*(
        asyncio.gather(*(pool.model_metadata(n, folder) for n in names)) for folder, names in (
            ("checkpoints", inventory.checkpoints), ("loras", inventory.loras),
            ("diffusion_models", inventory.diffusion_models))))
    checkpoints = {name: pools.family_of(name, meta) for name, meta in zip(inventory.checkpoints, ckpt_meta)}
    loras = tuple(lora_info_from_metadata(name, meta) for name, meta in zip(inventory.loras, lora_meta))
    diffusion_families = {name: pools.diffusion_family(name, meta)
                          for name, meta in zip(inventory.diffusion_models, diffusion_meta)}
    split = split_models(servers, inventory, pools, diffusion_families, checkpoints)
    checkpoints.update({name: offered.family for name, offered in split.items()})
    log.info("Catalog: %d checkpoints %s (%d split-file), %d LoRAs", len(checkpoints),
             sorted(set(checkpoints.values()), key=str), len(split), len(loras))
    return Catalog(checkpoints, loras, inventory.samplers, inventory.schedulers, inventory,
                   {name: offered.model for name, offered in split.items()})
