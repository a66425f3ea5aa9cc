"""The pool on servers whose real costs differ from the nominal model: a fixed per-prompt
overhead (validation, save, fetch) that dwarfs small jobs, and one GPU 1.5x slower than the other.

What a new user saw on two real ComfyUI servers (issue 10): from the third batch on every batch
went to one server while the other sat idle. The first test is that report on simulated servers
(small CPU-like jobs whose nominal cost is milliseconds; it failed with the single speed factor:
one batch all 16 images on the slower server); the second runs the bench's five mixed batches on
the time model alone, deterministically, for shares and the makespan against its lower bound.
"""

from __future__ import annotations

import contextlib
from collections import Counter

from bench.bench_scheduler import real_models, replay
from comfy.models import GenerationSpec, ImageResult, PoolJob
from comfy.pool import ServerPool
from comfy.simulator import SimulatedComfy, TimeModel

from .conftest import SD15, sim_inventory

SCALE = 0.04  # simulated GPU seconds -> wall seconds: five batches in a few seconds
OVERHEAD = 1.5  # seconds per prompt at real pace, as on the CPU servers of the report
SLOWER = 1.5
# (width, steps) per batch: full-size drafts, then tiny ones whose nominal cost is milliseconds
SHAPES = ((512, 20), (256, 8), (64, 4), (64, 4), (512, 12))


def mixed_batch(index: int) -> list[PoolJob]:
    """16 images over two of the three checkpoints (9/7, rotating), jobs of at most 4."""
    width, steps = SHAPES[index]
    first, second = SD15[index % 3], SD15[(index + 1) % 3]
    jobs = []
    for checkpoint, sizes in ((first, (3, 3, 3)), (second, (4, 3))):
        for k, size in enumerate(sizes):
            spec = GenerationSpec(checkpoint=checkpoint, positive="a lighthouse", negative="blurry", seed=k,
                                  width=width, height=width, steps=steps, cfg=7.0, batch_size=size)
            jobs.append(PoolJob(f"b{index}-{checkpoint[:1]}{k}", spec))
    return jobs


def real_costs(gpu_factor: float) -> TimeModel:
    return TimeModel(prompt_overhead=OVERHEAD, gpu_factor=gpu_factor, scale=SCALE)


async def test_five_mixed_batches_keep_both_servers_busy() -> None:
    sims = [SimulatedComfy(sim_inventory(SD15), name=f"sim-gpu-{i}", time_model=real_costs(factor))
            for i, factor in enumerate((1.0, SLOWER))]
    for sim in sims:
        await sim.start()
    shares: list[dict[str, float]] = []
    try:
        async with ServerPool([s.url for s in sims], names=[s.name for s in sims], health_interval=60,
                              timeout=10) as pool:
            for index in range(len(SHAPES)):
                images: Counter[str] = Counter()
                async with contextlib.aclosing(pool.run(mixed_batch(index), f"batch-{index}")) as events:
                    async for event in events:
                        if isinstance(event, ImageResult):
                            images[event.server] += 1
                assert sum(images.values()) == 16
                shares.append({s.name: images[s.name] / 16 for s in sims})
    finally:
        for sim in sims:
            await sim.stop()
    # The faster server should get ~60 %, the slower ~40 %; 30 % leaves room for a job either way.
    assert all(min(share.values()) >= 0.3 for share in shares), shares


def test_five_mixed_batches_on_the_time_model_stay_balanced_and_near_the_bound() -> None:
    """The bench's five mixed batches (20/16/20/12/20 images, 1-3 checkpoints, 512-768 px) through
    the scheduler and its learners, every prompt taking what the simulator's time model says
    (0.5 s per prompt, the second GPU 1.5x slower): deterministic, no wall clock."""
    outcomes = replay(real_models())
    images = Counter[str]()
    for outcome in outcomes:
        images.update(outcome.images)
        assert min(outcome.images.values()) > 0  # both servers work in every batch
    total = sum(images.values())
    assert min(images.values()) / total >= 0.3  # the slower one's fair share is ~40 %
    ratios = [round(o.makespan / o.bound, 3) for o in outcomes]
    assert sum(o.makespan for o in outcomes) <= 1.15 * sum(o.bound for o in outcomes), ratios
    assert max(ratios) <= 1.2, ratios  # today 1.00-1.18: the first batch is learnt while it runs
