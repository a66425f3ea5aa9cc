"""What the ComfyUI servers offer, in the learning layer's terms.

Checkpoints with their model family, LoRAs with base model / tags / trigger words, samplers and
schedulers — read from the pool (object_info + /view_metadata) and kept until the inventory
changes, so planning a batch never waits on metadata requests.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from comfy.models import ServerInventory
from comfy.pool import ServerPool
from families.registry import registry
from learning.lora import lora_info_from_metadata
from learning.models import LoraInfo
from learning.pools import PoolConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Catalog:
    """A consistent snapshot of the models every online server offers (their union)."""

    checkpoints: dict[str, str]  # name -> family
    loras: tuple[LoraInfo, ...]
    samplers: tuple[str, ...]
    schedulers: tuple[str, ...]
    inventory: ServerInventory

    def families(self) -> list[str]:
        """The registry families the servers have a checkpoint of, most checkpoints first (ties in
        registry order)."""
        names = registry().names
        counts = {family: sum(1 for f in self.checkpoints.values() if f == family) for family in names}
        return sorted((f for f in names if counts[f]), key=lambda f: (-counts[f], names.index(f)))


async def read_catalog(pool: ServerPool, pools: PoolConfig) -> Catalog:
    """Build a catalog from the pool's current inventories and (cached) model metadata."""
    inventory = pool.inventory_union()
    ckpt_meta = await asyncio.gather(*(pool.model_metadata(n, "checkpoints") for n in inventory.checkpoints))
    lora_meta = await asyncio.gather(*(pool.model_metadata(n, "loras") for n in inventory.loras))
    checkpoints = {name: pools.family_of(name, meta) for name, meta in zip(inventory.checkpoints, ckpt_meta)}
    loras = tuple(lora_info_from_metadata(name, meta) for name, meta in zip(inventory.loras, lora_meta))
    log.info("Catalog: %d checkpoints %s, %d LoRAs", len(checkpoints),
             sorted(set(checkpoints.values()), key=str), len(loras))
    return Catalog(checkpoints, loras, inventory.samplers, inventory.schedulers, inventory)
