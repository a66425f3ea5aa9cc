"""Start and stop the backend: store, simulator (when no ComfyUI URL is given), pool, service."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from comfy.pool import ServerPool
from comfy.simulator import SimulatorThread, load_inventory
from draftgrid.config import AppConfig
from draftgrid.retention import RetentionPolicy
from draftgrid.runtime import LoopThread
from draftgrid.service import DraftGridService
from learning.pools import load_pools
from learning.store.preference_store import PreferenceStore

log = logging.getLogger(__name__)

# the built-in simulator keeps its newest saved images only: the app copies each one as it
# finishes, and a demo running for weeks would otherwise fill its disk with the simulator's copies
# (far more than the images in flight at once, so none is removed before the app has it)
SIM_KEEP_IMAGES = 1000


@dataclass
class Backend:
    """Everything that must be stopped again, in reverse order of start."""

    service: DraftGridService
    store: PreferenceStore
    pool: ServerPool
    runner: LoopThread
    simulator: SimulatorThread | None

    def stop(self) -> None:
        try:
            self.service.stop(timeout=10)
        finally:
            self.runner.stop()
            if self.simulator is not None:
                self.simulator.stop()
            self.store.close()


def start_simulator(config: AppConfig) -> SimulatorThread:
    sim = SimulatorThread(count=config.sim_gpus, speed=config.sim_speed, previews=config.sim_previews,
                          inventory=load_inventory(config.sim_inventory),
                          output_dir=config.data_dir / "simulator", keep_images=SIM_KEEP_IMAGES)
    urls = sim.start()
    log.info("No ComfyUI URL given: started the built-in simulator with %d simulated GPUs at %s",
             config.sim_gpus, ", ".join(urls))
    return sim


def start_backend(config: AppConfig) -> Backend:
    """Open the database first (a locked file must fail before anything else starts)."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    if str(config.db_path) != ":memory:":
        config.db_path.parent.mkdir(parents=True, exist_ok=True)
    store = PreferenceStore.open(config.db_path, half_life=config.half_life)
    simulator = start_simulator(config) if config.simulated else None
    urls = list(config.comfy_urls) or [s.url for s in simulator.servers]  # type: ignore[union-attr]
    names = None if config.comfy_urls else [s.name for s in simulator.servers]  # type: ignore[union-attr]
    runner = LoopThread()

    async def make_pool() -> ServerPool:
        pool = ServerPool(urls, names=names, timeout=config.comfy_timeout, health_interval=config.health_interval)
        await pool.start()
        return pool

    pool = runner.run(make_pool())
    service = DraftGridService(store=store, pool=pool, loop_runner=runner, pools=load_pools(config.pools_file),
                               data_dir=config.data_dir, policy=config.policy, max_batch=config.max_batch,
                               simulated=config.simulated, admins=config.admins,
                               share_preferences=config.share_preferences,
                               retention=RetentionPolicy.of(config.max_image_disk_mb, config.keep_drafts_days))
    service.recover_interrupted()
    service.request_pruning()  # drafts past their days, or a budget lowered since the last run
    try:
        service.refresh_catalog()
    except Exception as exc:  # servers may come online later; the GPUs panel shows them offline
        log.warning("Could not read the servers' models yet: %s", exc)
    return Backend(service, store, pool, runner, simulator)
