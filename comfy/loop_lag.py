"""How late the pool's event loop runs, so that the app's own stall is not read as a hung server.

A health check times out after a fixed span of wall time. When the process itself cannot run —
a starved CPU (a shared vCPU on a hosted Space, a machine busy with other work) or a call that
blocks the loop — the server's answer sits unread in the socket while that time runs out, and
the check reads as a slow server; two in a row take a live server out and move its work.

`LoopLagMeter` ticks every `interval` seconds and adds up how late each tick ran. A health
check reads `total` before and after: a time-out during which the loop itself was late for a
good part of the time-out is the app's, not the server's, and does not count (pool.py).
"""

from __future__ import annotations

import asyncio
import contextlib

TICK_SECONDS = 0.1  # ten wake-ups a second: negligible work, and a stall of a few ticks shows


class LoopLagMeter:
    """Adds up the lateness of a ticking task on the running loop (seconds)."""

    def __init__(self, interval: float = TICK_SECONDS) -> None:
        self.interval = interval
        self.total = 0.0  # seconds the ticks ran late in all, since start
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start ticking on the running loop (a second call keeps the first meter)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._tick(), name="loop-lag-meter")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            self.total += max(0.0, loop.time() - due)
