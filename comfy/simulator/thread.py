"""SimulatorThread: N simulated servers on one background event loop, for synchronous callers.

The Gradio app, benches and sync tests need servers that keep running while their own code
blocks; a daemon thread with its own loop gives them that. Server `i` is named `sim-gpu-i` and
reports device `Simulated GPU i`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import Future
from typing import Any, Coroutine, TypeVar

from comfy.simulator.server import SimulatedComfy

log = logging.getLogger(__name__)
T = TypeVar("T")


class SimulatorThread:
    """`count` SimulatedComfy servers (constructed with `**kwargs`) on a background loop."""

    def __init__(self, count: int = 1, host: str = "127.0.0.1", ports: list[int] | None = None, **kwargs: Any) -> None:
        self.host = host
        self.ports = ports or [0] * count
        self._kwargs = kwargs
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="comfy-simulator", daemon=True)
        self.servers: list[SimulatedComfy] = []
        self.count = count

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the simulators' loop and wait for its result."""
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result()

    async def _create(self) -> list[SimulatedComfy]:
        # constructed on the loop so their asyncio primitives belong to it; each server gets its own
        # output folder, as separate machines would (a shared one lets their file counters collide)
        kwargs = dict(self._kwargs)
        shared = kwargs.pop("output_dir", None)
        return [SimulatedComfy(name=f"sim-gpu-{i}", device_index=i, **kwargs,
                               output_dir=shared / f"sim-gpu-{i}" if shared is not None else None)
                for i in range(self.count)]

    def start(self) -> list[str]:
        """Start the thread and every server; returns their base URLs."""
        self._thread.start()
        self.servers = self.call(self._create())
        urls = [self.call(server.start(self.host, port)) for server, port in zip(self.servers, self.ports)]
        log.info("simulator thread serving %s", ", ".join(urls))
        return urls

    def stop(self) -> None:
        """Close every server (a temporary output folder goes with it), then the loop and the thread."""
        for server in self.servers:
            self.call(server.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()
