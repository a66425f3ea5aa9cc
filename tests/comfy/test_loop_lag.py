"""The loop-lag meter, and health checks that a stall of the app's own loop does not fail."""

from __future__ import annotations

import asyncio
import time

from comfy.loop_lag import LoopLagMeter
from comfy.pool import HUNG_AFTER_CHECKS, ServerPool

from .test_pool_sim import _answered_check, two_sims  # noqa: F401 - the fixture

STALL_SECONDS = 1.5  # longer than the 1 s health-check time-out these pools use


async def test_the_meter_adds_up_a_stall_of_the_loop() -> None:
    meter = LoopLagMeter(interval=0.05)
    meter.start()
    try:
        await asyncio.sleep(0.1)
        before = meter.total
        time.sleep(0.5)  # the loop cannot run: the tick due meanwhile runs ~0.5 s late
        await asyncio.sleep(0.1)
        assert meter.total - before >= 0.4
    finally:
        await meter.stop()


async def test_health_checks_on_a_stalled_loop_do_not_take_a_live_server_out(two_sims: list) -> None:  # noqa: F811
    """Inside each check the loop stalls past the time-out (a blocking call, a starved process),
    then the server answers at once. More such checks in a row than make a server hung leave it
    online; on a loop that does not stall, the same time-outs still count (test_pool_sim)."""
    async with ServerPool([s.url for s in two_sims], names=[s.name for s in two_sims], health_interval=60,
                          timeout=1.0) as pool:
        name = two_sims[0].name
        await _answered_check(pool, name)
        member = pool._members[name]
        answer_queue = member.client.queue

        async def stalled_queue():  # type: ignore[no-untyped-def]
            time.sleep(STALL_SECONDS)  # blocks the loop inside the check's time-out
            return await answer_queue()

        member.client.queue = stalled_queue  # type: ignore[method-assign]
        for _ in range(HUNG_AFTER_CHECKS + 1):
            await pool.refresh()
            assert member.status.online, member.status.last_error
            assert member.slow_checks == 0
