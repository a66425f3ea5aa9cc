"""Makespan of the pool's scheduler vs. naive round-robin, on simulated GPUs.

Run: `python -m bench scheduler` (or `python -m bench.bench_scheduler`).

Workload: 20 images over 3 sd15 checkpoints (7/7/6) in jobs of at most 4 images, 512², 20 steps,
on 2 simulated servers (time model: checkpoint load 3 s, 0.05 s per step at 512², batch of n costs
n**0.8 images), scaled by SCALE so one run takes about a second of wall time.

- pool: `ServerPool.run` (checkpoint-affinity groups, batching, stealing).
- round-robin: the 20 images as 20 single-image prompts, image i to server i mod 2, each server
  working through its list one prompt at a time. Two image orders: `grouped` (A×7, B×7, C×6) and
  `interleaved` (A, B, C, A, ... — how an explore-mode grid mixes checkpoints).
- lower bound: max(total work / servers, longest job), where total work = one load per distinct
  checkpoint + every job's sampling + decode seconds from the same time model (so no schedule of
  these jobs on these servers can beat it).

Also: time to first image, and app-side overhead per image with a zero-latency simulator (speed 0:
every GPU cost is 0, so wall time per image is our client/pool/HTTP cost plus the simulator's own
PNG rendering on the same CPU — an upper bound of our overhead).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from comfy.client import ComfyClient
from comfy.models import GenerationSpec, ImageResult, PoolJob
from comfy.pool import ServerPool
from comfy.simulator import Inventory, ModelFile, SimulatedComfy, TimeModel
from comfy.workflow import build_workflow

SCALE = 0.25
CHECKPOINTS = ("alpha.safetensors", "beta.safetensors", "gamma.safetensors")
SPLIT = {"alpha.safetensors": (4, 3), "beta.safetensors": (4, 3), "gamma.safetensors": (4, 2)}
SERVERS = 2
OVERHEAD_BATCHES = 5


def _spec(checkpoint: str, images: int, seed: int) -> GenerationSpec:
    return GenerationSpec(checkpoint=checkpoint, positive="a lighthouse at dusk", negative="blurry", seed=seed,
                          width=512, height=512, steps=20, cfg=7.0, batch_size=images)


def pool_jobs() -> list[PoolJob]:
    return [PoolJob(f"{ck[:1]}{i}", _spec(ck, n, 100 + i)) for ck, ns in SPLIT.items() for i, n in enumerate(ns)]


def single_images(order: str) -> list[GenerationSpec]:
    per_ckpt = {ck: [_spec(ck, 1, 100 + i) for i in range(sum(ns))] for ck, ns in SPLIT.items()}
    if order == "grouped":
        return [s for specs in per_ckpt.values() for s in specs]
    columns = list(per_ckpt.values())
    return [col[i] for i in range(max(map(len, columns))) for col in columns if i < len(col)]


def lower_bound(jobs: list[PoolJob], model: TimeModel, servers: int) -> float:
    """Seconds no schedule can beat: max(total work / servers, longest single job)."""
    def job_seconds(job: PoolJob) -> float:
        s = job.spec
        return s.steps * model.step_seconds_for(s.width, s.height, s.batch_size) + model.decode_seconds_for(
            s.width, s.height, s.batch_size)
    loads = sum(model.load_seconds(j.family, True, False) for j in {j.spec.checkpoint: j for j in jobs}.values())
    longest = max(job_seconds(j) + model.load_seconds(j.family, True, False) for j in jobs)
    return max((loads + sum(map(job_seconds, jobs))) / servers, longest)


@dataclass
class Sims:
    servers: list[SimulatedComfy]

    @classmethod
    async def start(cls, speed: float) -> Sims:
        inventory = Inventory(checkpoints={c: ModelFile(c, "sd15") for c in CHECKPOINTS}, loras={})
        servers = [SimulatedComfy(inventory.copy(), name=f"sim-gpu-{i}", speed=speed, time_model=TimeModel())
                   for i in range(SERVERS)]
        for server in servers:
            await server.start()
        return cls(servers)

    async def stop(self) -> None:
        for server in self.servers:
            await server.stop()


async def run_pool(speed: float, batches: int = 1) -> tuple[float, float, int]:
    """(makespan, time to first image, images) of `batches` pool batches on fresh simulators."""
    sims = await Sims.start(speed)
    try:
        async with ServerPool([s.url for s in sims.servers], names=[s.name for s in sims.servers],
                              health_interval=3600) as pool:
            start = time.perf_counter()
            first, images = None, 0
            for b in range(batches):
                async for event in pool.run(pool_jobs(), f"bench-{b}"):
                    if isinstance(event, ImageResult):
                        images += 1
                        first = first or time.perf_counter() - start
            return time.perf_counter() - start, first or 0.0, images
    finally:
        await sims.stop()


async def run_round_robin(order: str) -> tuple[float, float]:
    """(makespan, time to first image) of single-image prompts dealt round-robin."""
    sims = await Sims.start(1 / SCALE)
    specs = single_images(order)
    firsts: list[float] = []
    try:
        clients = [ComfyClient(s.url, name=s.name) for s in sims.servers]
        start = time.perf_counter()

        async def serve(index: int) -> None:
            for spec in specs[index::SERVERS]:
                await clients[index].run(build_workflow(spec))
                firsts.append(time.perf_counter() - start)
        await asyncio.gather(*(serve(i) for i in range(SERVERS)))
        makespan = time.perf_counter() - start
        await asyncio.gather(*(c.close() for c in clients))
        return makespan, min(firsts)
    finally:
        await sims.stop()


async def measure() -> None:
    model = TimeModel(scale=SCALE)
    bound = lower_bound(pool_jobs(), model, SERVERS)
    pool_makespan, pool_first, images = await run_pool(1 / SCALE)
    print(f"workload: 20 images, 3 checkpoints (7/7/6), jobs <= 4, {SERVERS} simulated GPUs, time scale {SCALE}")
    print(f"lower bound            {bound:6.2f} s  (= {bound / SCALE:.1f} s at real GPU pace)")
    print(f"pool                   {pool_makespan:6.2f} s  first image {pool_first:5.2f} s  "
          f"{images} images  ratio to bound {pool_makespan / bound:.2f}")
    for order in ("grouped", "interleaved"):
        rr, rr_first = await run_round_robin(order)
        print(f"round-robin {order:<11}{rr:6.2f} s  first image {rr_first:5.2f} s  "
              f"pool is {rr / pool_makespan:.2f}x faster")
    wall, _, count = await run_pool(0.0, OVERHEAD_BATCHES)
    print(f"overhead at speed 0    {1000 * wall / count:6.2f} ms/image over {count} images "
          f"(client + pool + HTTP/ws + simulator PNG rendering, 2 cores)")


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(measure())


if __name__ == "__main__":
    main()
