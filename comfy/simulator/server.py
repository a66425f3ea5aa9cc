"""SimulatedComfy: one simulated ComfyUI server (one "GPU") on a real loopback port.

It owns the aiohttp application, the prompt queue with its single worker (ComfyUI executes one
prompt at a time), the history, the WebSocket hub and the fault switches. The listening socket
is created directly with `loop.create_server`, so that closing it (refuse_connections, a kill)
is immediate and keeps or drops open connections exactly as intended.
"""

from __future__ import annotations

import asyncio
import logging
import math
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from comfy.simulator.executor import Environment, Executor, QueueItem, ServerDied
from comfy.simulator.faults import Faults
from comfy.simulator.files import FileStore
from comfy.simulator.hub import Hub
from comfy.simulator.inventory import Inventory, load_inventory
from comfy.simulator.nodedefs import NodeCatalog
from comfy.simulator.routes import Routes
from comfy.simulator.state import History, PromptQueue
from comfy.simulator.timemodel import TimeModel
from comfy.simulator.validation import ValidationResult, validate_prompt

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT = 0.25  # seconds open requests get when the server stops
SIM_KEY: web.AppKey[SimulatedComfy] = web.AppKey("sim")


@web.middleware
async def _hang_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """With the `hang` fault on, ComfyUI routes never answer (the `/sim/*` controls still do)."""
    sim = request.app[SIM_KEY]
    if not request.path.startswith("/sim/"):
        await sim.not_hung.wait()
    return await handler(request)


class SimulatedComfy:
    """One simulated ComfyUI server speaking the real HTTP + WebSocket protocol.

    `speed` is how many times faster than the time model's realistic pace it runs (0 or inf:
    instant); `previews` turns on binary preview frames like `--preview-method latent2rgb`.
    """

    def __init__(self, inventory: Inventory | None = None, *, name: str = "sim-gpu-0", speed: float = 1.0,
                 time_model: TimeModel | None = None, previews: bool = False, output_dir: Path | None = None,
                 device_index: int = 0) -> None:
        self.name = name
        self.device_index = device_index
        self.device_name = f"Simulated GPU {device_index} (DraftGrid simulator)"
        self.inventory = (inventory or load_inventory()).copy()
        time_model = (time_model or TimeModel()).scaled(0.0 if speed == 0 or math.isinf(speed) else 1.0 / speed)
        self.faults = Faults()
        self.files = FileStore(output_dir or Path(tempfile.mkdtemp(prefix="draftgrid-sim-")))
        self.hub = Hub()
        self.queue = PromptQueue()
        self.history = History()
        self.not_hung = asyncio.Event()
        self.not_hung.set()
        self.env = Environment(self.hub, self.files, self.faults, time_model, lambda: self.inventory,
                               self.catalog, self.not_hung, previews)
        self.executor = Executor(self.env)
        self.number = 0
        self.started_at = time.time()
        self.url = ""
        self.host = "127.0.0.1"
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.Server | None = None
        self._worker: asyncio.Task[None] | None = None
        self.faults.listener = self._fault_changed

    # --- public state ---------------------------------------------------------------------
    @property
    def time_model(self) -> TimeModel:
        return self.env.time_model

    @time_model.setter
    def time_model(self, model: TimeModel) -> None:
        """Swappable at any time (e.g. slow a server down mid-test); the next cost uses it."""
        self.env.time_model = model

    @property
    def loaded_checkpoint(self) -> str | None:
        return self.env.gpu.checkpoint

    @property
    def images_done(self) -> int:
        return self.env.gpu.images_done

    def state(self) -> dict[str, Any]:
        """What `GET /sim/state` shows."""
        return {"name": self.name, "device": self.device_name, "loaded_checkpoint": self.loaded_checkpoint,
                "loaded_loras": [[n, s] for n, s in self.env.gpu.loras], "images_done": self.images_done,
                "queue_running": [self.queue.running.prompt_id] if self.queue.running else [],
                "queue_pending": [entry[2].prompt_id for entry in self.queue.pending],
                "faults": self.faults.to_json(), "checkpoints": sorted(self.inventory.checkpoints)}

    def catalog(self) -> NodeCatalog:
        return NodeCatalog(self.inventory, self.files.input_images())

    def remove_checkpoint(self, name: str) -> None:
        """The file is gone: later prompts naming it fail validation with `value_not_in_list`."""
        self.inventory.checkpoints.pop(name, None)
        log.info("%s: checkpoint %s removed", self.name, name)

    # --- lifecycle ------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on host:port (0 = a free port); returns the base URL."""
        self._loop = asyncio.get_running_loop()
        app = web.Application(middlewares=[_hang_middleware], client_max_size=200 * 1024**2)
        app[SIM_KEY] = self
        app.add_routes(Routes(self).table())
        self._runner = web.AppRunner(app, shutdown_timeout=SHUTDOWN_TIMEOUT, access_log=None)
        await self._runner.setup()
        await self._listen(host, port)
        self._worker = asyncio.create_task(self._work(), name=f"{self.name}-worker")
        self.url = f"http://{self.host}:{self.port}"
        log.info("%s serving at %s", self.name, self.url)
        return self.url

    async def _listen(self, host: str, port: int) -> None:
        assert self._runner is not None and self._runner.server is not None
        self._listener = await asyncio.get_running_loop().create_server(self._runner.server, host, port,
                                                                        reuse_address=True)
        self.host, self.port = host, self._listener.sockets[0].getsockname()[1]

    def _close_listener(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    async def stop(self) -> None:
        """Graceful stop: close frames to websockets, drop the listener and connections."""
        await self._shutdown(graceful=True)

    async def _shutdown(self, graceful: bool) -> None:
        self._close_listener()
        if self._worker is not None and self._worker is not asyncio.current_task():
            self._worker.cancel()
        self._worker = None
        if graceful:
            await self.hub.close_all()
        else:
            self.hub.abort_all()
        self.not_hung.set()  # release hung handlers so the runner can finish them
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        log.info("%s stopped (%s)", self.name, "graceful" if graceful else "killed")

    async def restart(self) -> None:
        """Stop (if still up) and serve again on the same port, with the faults cleared."""
        if self._runner is not None:
            await self.stop()
        self.faults.refuse_connections = False
        self.faults.hang = False
        await self.start(self.host, self.port)

    async def _die(self) -> None:
        """The `die_after_images` fault: like a killed process, state is lost with it."""
        await self._shutdown(graceful=False)
        self.queue = PromptQueue()
        self.history = History()
        self.executor.reset()
        self.env.gpu.checkpoint, self.env.gpu.loras = None, ()

    # --- queue ----------------------------------------------------------------------------
    def validate(self, prompt: dict[str, Any]) -> ValidationResult:
        return validate_prompt(prompt, self.catalog(), lambda name: self.files.input_image(name) is not None)

    async def broadcast_status(self) -> None:
        await self.hub.send("status", {"status": {"exec_info": {"queue_remaining": self.queue.remaining()}}}, None)

    async def enqueue(self, item: QueueItem) -> None:
        self.queue.put(item)
        log.info("%s queued %s (number %s, %d waiting)", self.name, item.prompt_id, item.number, self.queue.remaining())
        await self.broadcast_status()

    async def _work(self) -> None:
        """The single execution worker: one prompt at a time, in queue order."""
        while True:
            item = await self.queue.take()
            await self.broadcast_status()
            try:
                entry = await self.executor.run(item)
            except ServerDied:
                asyncio.get_running_loop().create_task(self._die())
                return
            self.history.add(item.prompt_id, entry)
            self.queue.done()
            await self.broadcast_status()
            if item.client_id is not None:
                await self.hub.send("executing", {"node": None, "prompt_id": item.prompt_id}, item.client_id)

    def free(self, unload_models: bool, free_memory: bool) -> None:
        """POST /free: unload the GPU (next prompt pays the load again) and/or drop caches."""
        if unload_models:
            self.env.gpu.checkpoint, self.env.gpu.loras = None, ()
        if free_memory:
            self.executor.reset()
        log.info("%s free: unload_models=%s free_memory=%s", self.name, unload_models, free_memory)

    # --- faults ---------------------------------------------------------------------------
    def _fault_changed(self, name: str) -> None:
        """Apply a switched fault on the server's loop (now, when already on it)."""
        if self._loop is None:
            return
        try:
            on_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            self._apply_fault(name)
        else:
            self._loop.call_soon_threadsafe(self._apply_fault, name)

    def _apply_fault(self, name: str) -> None:
        faults = self.faults
        log.warning("%s fault %s = %s", self.name, name, getattr(faults, name))
        if name == "hang":
            (self.not_hung.clear if faults.hang else self.not_hung.set)()
        elif name == "refuse_connections" and faults.refuse_connections:
            self._close_listener()
        elif name == "die_after_images" and faults.die_after_images == 0 and self._runner is not None:
            faults.die_after_images = None
            asyncio.get_running_loop().create_task(self._die())
