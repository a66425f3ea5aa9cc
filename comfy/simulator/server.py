"""SimulatedComfy: one simulated ComfyUI server (one "GPU") on a real loopback port.

It owns the aiohttp application, the prompt queue with its single worker (ComfyUI executes one
prompt at a time), the history, the WebSocket hub and the fault switches. The listening socket
is bound by us (already listening when `_bind` returns) and served with `loop.create_server`, so
a fault can close it and every open connection at once, as a killed process does, and open it
again on the same port without a window in which connections are refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import shutil
import socket
import tempfile
import time
import weakref
from pathlib import Path
from collections.abc import Iterator
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
    instant); `previews` turns on binary preview frames like `--preview-method latent2rgb`;
    `keep_images` keeps only the newest N saved images (None: all, as ComfyUI does).
    """

    def __init__(self, inventory: Inventory | None = None, *, name: str = "sim-gpu-0", speed: float = 1.0,
                 time_model: TimeModel | None = None, previews: bool = False, output_dir: Path | None = None,
                 device_index: int = 0, keep_images: int | None = None) -> None:
        self.name = name
        self.device_index = device_index
        self.device_name = f"Simulated GPU {device_index} (DraftGrid simulator)"
        self.inventory = (inventory or load_inventory()).copy()
        time_model = (time_model or TimeModel()).scaled(0.0 if speed == 0 or math.isinf(speed) else 1.0 / speed)
        self.faults = Faults()
        self.files = FileStore(output_dir or Path(tempfile.mkdtemp(prefix="draftgrid-sim-")), keep_images)
        # a temporary folder of its own is removed by close(), or when the server is collected or
        # the interpreter exits (a test that only stop()s a server leaves nothing behind in /tmp)
        self._remove_own_dir = (weakref.finalize(self, shutil.rmtree, self.files.root, ignore_errors=True)
                                if output_dir is None else None)
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
        self._control_transport: asyncio.BaseTransport | None = None  # spared by a drop (POST /sim/faults)
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
        await self._serve(self._bind(host, port))
        assert self._listener is not None
        self.host, self.port = host, self._listener.sockets[0].getsockname()[1]

    @staticmethod
    def _bind(host: str, port: int) -> socket.socket:
        """A socket that listens (the kernel queues connections) before this returns."""
        return socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)

    async def _serve(self, sock: socket.socket) -> None:
        assert self._runner is not None and self._runner.server is not None
        self._listener = await asyncio.get_running_loop().create_server(self._runner.server, sock=sock)
        if self.faults.refuse_connections:  # switched on again while we were setting up
            self._close_listener()

    def _close_listener(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def _sever(self) -> None:
        """What the network sees of a killed process: the listener and every open HTTP connection
        and websocket vanish at once (no close frame, no answer to requests in flight). The
        connection switching the fault over POST /sim/faults is spared so it gets its answer."""
        self._close_listener()
        self.hub.abort_all()
        server = self._runner.server if self._runner is not None else None
        for handler in server.connections if server is not None else []:
            if handler.transport is not None and handler.transport is not self._control_transport:
                handler.transport.abort()
        log.info("%s: listener and open connections dropped", self.name)

    @contextlib.contextmanager
    def controlled_over(self, transport: asyncio.BaseTransport | None) -> Iterator[None]:
        """Faults switched inside this block spare `transport` (the request switching them)."""
        self._control_transport = transport
        try:
            yield
        finally:
            self._control_transport = None

    async def stop(self) -> None:
        """Graceful stop: close frames to websockets, drop the listener and connections."""
        await self._shutdown(graceful=True)

    async def close(self) -> None:
        """Stop for good: as `stop`, then remove the temporary output folder if the server made it."""
        await self.stop()
        if self._remove_own_dir is not None:
            self._remove_own_dir()

    async def _shutdown(self, graceful: bool) -> None:
        """Stop serving; a kill has already `_sever`ed every connection, synchronously."""
        if graceful:
            self._close_listener()
            await self.hub.close_all()
        if self._worker is not None and self._worker is not asyncio.current_task():
            self._worker.cancel()
        self._worker = None
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
        """The rest of the `die_after_images` kill, after `_sever()`: state is lost with the process."""
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
                self._sever()  # at once: no answer may leave a dead process
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
            self._sever()
        elif name == "refuse_connections" and self._runner is not None and self._listener is None:
            # Bound now, so a connection made right after the switch is queued, not refused.
            asyncio.get_running_loop().create_task(self._serve(self._bind(self.host, self.port)))
        elif name == "die_after_images" and faults.die_after_images == 0 and self._runner is not None:
            faults.die_after_images = None
            self._sever()
            asyncio.get_running_loop().create_task(self._die())
