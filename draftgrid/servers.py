"""The ComfyUI servers as the app sees them: health, and the catalog of what they offer.

The catalog (checkpoints with their family, LoRAs with their metadata, samplers, schedulers) is
read once and kept until the servers' inventories change — a checkpoint deleted, a server lost
or back — so planning a batch never waits on metadata requests and never names a model that no
online server has.
"""

from __future__ import annotations

from comfy.models import ServerStatus
from comfy.pool import ServerPool
from draftgrid.catalog import Catalog, read_catalog
from draftgrid.errors import NoServerOnline
from draftgrid.runtime import LoopThread
from learning.pools import PoolConfig


class Servers:
    """The server pool's health and catalog, for sync callers (the pool runs on `runner`'s loop)."""

    def __init__(self, pool: ServerPool, pools: PoolConfig, runner: LoopThread, *, simulated: bool = False) -> None:
        self.pool = pool
        self.pools = pools
        self.simulated = simulated
        self._runner = runner
        self._catalog: Catalog | None = None

    def refresh_catalog(self) -> Catalog:
        """Re-read health, inventories and metadata from every server."""
        async def refresh() -> Catalog:
            await self.pool.refresh()
            return await read_catalog(self.pool, self.pools)

        self._catalog = self._runner.run(refresh())
        return self._catalog

    def catalog(self) -> Catalog:
        """The current catalog, rebuilt when the servers' inventories changed."""
        current = self._catalog
        if current is None or current.inventory != self.pool.inventory_union() or not current.checkpoints:
            current = self.refresh_catalog()
        return current

    def catalog_if_read(self) -> Catalog | None:
        """The catalog if one was read already — for the UI to fill its menus without a request."""
        return self._catalog

    def statuses(self) -> list[ServerStatus]:
        statuses = self.pool.statuses()
        for status in statuses:  # the embedded simulator is known from config, not from the wire
            status.simulated = status.simulated or self.simulated
        return statuses

    def require_online(self) -> Catalog:
        """The catalog, or NoServerOnline (503) when no server can take work."""
        if not any(s.online for s in self.pool.statuses()):
            self._runner.run(self.pool.refresh())
            if not any(s.online for s in self.pool.statuses()):
                raise NoServerOnline("no ComfyUI server is online; start one or check the URLs, then retry")
        catalog = self.catalog()
        if not catalog.checkpoints:
            raise NoServerOnline("the online ComfyUI servers report no checkpoints")
        return catalog

    def statuses_json(self) -> list[dict[str, object]]:
        return [{**status.__dict__, "checkpoints": list(status.checkpoints)} for status in self.statuses()]

    def loras_json(self) -> list[dict[str, object]]:
        return [{"name": i.name, "base_model": i.base_model, "tags": list(i.tags),
                 "trigger_words": list(i.trigger_words), "title": i.title} for i in self.catalog().loras]
