"""Concurrent batches on one pool: every batch ends, every image is done.

A job that ends in one batch teaches its server's costs to every batch, and each batch then
re-plans (`Scheduler.learnt`): queued jobs may move to a server whose worker for that batch had
found nothing to do and gone to sleep on the batch's wakeup. Unless that batch is woken, the
worker never looks again and the batch never ends (the load bench's hung batches). Two servers
whose real costs differ from the nominal model (a per-prompt overhead that dwarfs small jobs, one
GPU 1.5x slower) make the estimates change a lot after each job, so jobs move often.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter

from comfy.models import GenerationSpec, ImageResult, JobFailed, PoolJob
from comfy.pool import ServerPool
from comfy.scheduler import CostModel
from comfy.simulator import SimulatedComfy, TimeModel

from .conftest import SD15, sim_inventory

SCALE = 0.02  # simulated seconds -> wall seconds
DEADLINE = 20.0  # wall seconds for the batches of one test together; they need about 2


def batch_jobs(index: int, images: int = 12) -> list[PoolJob]:
    """`images` tiny drafts (64 px, 4 steps: nominally milliseconds) over two checkpoints, jobs of
    at most 4, a different pair of checkpoints per batch."""
    jobs = []
    for part, checkpoint in enumerate((SD15[index % 3], SD15[(index + 1) % 3])):
        left, k = images // 2, 0
        while left:
            size = min(4, left)
            spec = GenerationSpec(checkpoint=checkpoint, positive="a lighthouse", negative="blurry", seed=k,
                                  width=64, height=64, steps=4, cfg=7.0, batch_size=size)
            jobs.append(PoolJob(f"b{index}-{part}{k}", spec))
            left, k = left - size, k + 1
    return jobs


async def run_batch(pool: ServerPool, index: int) -> tuple[Counter[str], list[JobFailed]]:
    images: Counter[str] = Counter()
    failed: list[JobFailed] = []
    async with contextlib.aclosing(pool.run(batch_jobs(index), f"batch-{index}")) as events:
        async for event in events:
            if isinstance(event, ImageResult):
                images[event.server] += 1
            elif isinstance(event, JobFailed):
                failed.append(event)
    return images, failed


async def test_three_concurrent_batches_on_two_unequal_servers_all_finish() -> None:
    sims = [SimulatedComfy(sim_inventory(SD15), name=f"sim-gpu-{i}",
                           time_model=TimeModel(prompt_overhead=1.5, gpu_factor=factor, scale=SCALE))
            for i, factor in enumerate((1.0, 1.5))]
    for sim in sims:
        await sim.start()
    try:
        async with ServerPool([s.url for s in sims], names=[s.name for s in sims], health_interval=60,
                              timeout=10) as pool:
            for round_ in range(3):  # learnt costs carry over: later rounds start from measured ones
                results = await asyncio.wait_for(
                    asyncio.gather(*(run_batch(pool, 3 * round_ + i) for i in range(3))), DEADLINE)
                for images, failed in results:
                    assert failed == []
                    assert sum(images.values()) == 12
    finally:
        for sim in sims:
            await sim.stop()


async def test_a_job_moved_to_a_server_asleep_in_its_batch_runs() -> None:
    """The mechanism, step by step. Batch A's one job runs on `a-slow` (names break the tie of two
    unmeasured servers), 10x slower than nominal. Batch B, planned meanwhile, queues its one job on
    `a-slow` too (B cannot see A's job); B's worker on `b-fast` finds nothing it would finish
    sooner and sleeps. A's job ends: `a-slow` is learnt slow, and B moves its job to `b-fast`. Its
    worker must be woken, or neither looks again: `a-slow` finds the job better left on `b-fast`."""
    sims = [SimulatedComfy(sim_inventory(SD15), name=name, time_model=TimeModel(gpu_factor=factor, scale=SCALE))
            for name, factor in (("a-slow", 10.0), ("b-fast", 1.0))]
    for sim in sims:
        await sim.start()

    def job(job_id: str, checkpoint: str) -> PoolJob:  # an ancestral sampler: never split into pieces
        return PoolJob(job_id, GenerationSpec(checkpoint=checkpoint, positive="a lighthouse", negative="blurry",
                                              seed=1, width=512, height=512, steps=20, cfg=7.0, batch_size=4,
                                              sampler_name="euler_ancestral"))

    async def run(pool: ServerPool, key: str, jobs: list[PoolJob], started: asyncio.Event) -> Counter[str]:
        images: Counter[str] = Counter()
        async with contextlib.aclosing(pool.run(jobs, key)) as events:
            async for event in events:
                started.set()
                assert not isinstance(event, JobFailed), event
                if isinstance(event, ImageResult):
                    images[event.server] += 1
        return images

    try:  # the nominal model at the simulators' pace: b-fast is as nominal, a-slow 10x slower
        async with ServerPool([s.url for s in sims], names=[s.name for s in sims], health_interval=60,
                              timeout=10, cost=CostModel().scaled(SCALE)) as pool:
            a_started, b_started = asyncio.Event(), asyncio.Event()
            first = asyncio.create_task(run(pool, "A", [job("a0", SD15[0])], a_started))
            await asyncio.wait_for(a_started.wait(), DEADLINE)  # A's job is running on a-slow
            second = asyncio.create_task(run(pool, "B", [job("b0", SD15[1])], b_started))
            a_images, b_images = await asyncio.wait_for(asyncio.gather(first, second), DEADLINE)
    finally:
        for sim in sims:
            await sim.stop()
    assert a_images == {"a-slow": 4}
    assert b_images == {"b-fast": 4}
