"""Makespan of the pool's scheduler vs. naive round-robin, on simulated GPUs.

Run: `python -m bench.bench_scheduler [--scale 0.5]` (or `python -m bench scheduler`, default scale).

Workload: 20 images over 3 sd15 checkpoints (7/7/6) in jobs of at most 4 images, 512², 20 steps,
on 2 simulated servers (time model: checkpoint load 3 s, 0.05 s per step at 512², a batch of n
costs n**0.8 images, decode 0.02 s), every GPU second multiplied by `--scale`.

The simulated servers run in their own process (`python -m comfy.simulator`), as ComfyUI does:
their rendering and PNG encoding then use the other core instead of stalling the pool's loop,
and the CPU time of this process is the app side alone. Every run starts fresh servers (nothing
loaded, no cache).

- pool: `ServerPool.run` (checkpoint-affinity groups, batching, rebalancing, stealing).
- round-robin (the baseline): the batch's images in plan order (A×7, B×7, C×6), each its own
  batch-1 prompt, image i to server i mod 2, each server working through its list one prompt at a
  time. Also shown: the same with the images interleaved (A, B, C, A, ... — an explore grid).
- lower bound: max(total work / servers, longest job), total work = one load per distinct
  checkpoint + every job's sampling + decode from the same time model.

Also: time to first image, and the app-side overhead per image with a zero-latency simulator
(`--speed 0`, every GPU cost 0): wall time per image, and this process's CPU time per image.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from comfy.client import ComfyClient
from comfy.models import GenerationSpec, ImageResult, PoolJob
from comfy.pool import ServerPool
from comfy.scheduler import ServerSlot, simulate
from comfy.simulator import TimeModel
from comfy.workflow import build_workflow

DEFAULT_SCALE = 0.5
CHECKPOINTS = ("alpha.safetensors", "beta.safetensors", "gamma.safetensors")
SPLIT = {"alpha.safetensors": (4, 3), "beta.safetensors": (4, 3), "gamma.safetensors": (4, 2)}
SERVERS = 2
OVERHEAD_BATCHES = 5
ROOT = Path(__file__).resolve().parents[1]


def _spec(checkpoint: str, images: int, seed: int) -> GenerationSpec:
    return GenerationSpec(checkpoint=checkpoint, positive="a lighthouse at dusk", negative="blurry", seed=seed,
                          width=512, height=512, steps=20, cfg=7.0, batch_size=images)


def pool_jobs() -> list[PoolJob]:
    return [PoolJob(f"{ck[:1]}{i}", _spec(ck, n, 100 + i)) for ck, ns in SPLIT.items() for i, n in enumerate(ns)]


def single_images(order: str) -> list[GenerationSpec]:
    """The batch's 20 images as batch-1 specs, in plan order or interleaved across checkpoints."""
    per_ckpt = {ck: [_spec(ck, 1, 100 + i) for i in range(sum(ns))] for ck, ns in SPLIT.items()}
    if order == "plan order":
        return [s for specs in per_ckpt.values() for s in specs]
    columns = list(per_ckpt.values())
    return [col[i] for i in range(max(map(len, columns))) for col in columns if i < len(col)]


def job_gpu_seconds(spec: GenerationSpec, model: TimeModel) -> float:
    """Sampling + decode of one prompt under the simulator's time model (no load)."""
    return (spec.steps * model.step_seconds_for(spec.width, spec.height, spec.batch_size)
            + model.decode_seconds_for(spec.width, spec.height, spec.batch_size))


def lower_bound(jobs: list[PoolJob], model: TimeModel, servers: int) -> float:
    """Seconds no schedule can beat: max(total work / servers, longest single job)."""
    load = model.load_seconds("sd15", True, False)
    loads = load * len({j.spec.checkpoint for j in jobs})
    longest = max(job_gpu_seconds(j.spec, model) + load for j in jobs)
    return max((loads + sum(job_gpu_seconds(j.spec, model) for j in jobs)) / servers, longest)


@asynccontextmanager
async def simulators(speed: float) -> AsyncIterator[list[str]]:
    """Fresh simulated servers in a process of their own; yields their URLs."""
    with tempfile.TemporaryDirectory(prefix="bench-sim-") as folder:
        inventory = Path(folder) / "inventory.json"
        inventory.write_text(json.dumps({"checkpoints": [{"name": c, "family": "sd15"} for c in CHECKPOINTS]}))
        process = subprocess.Popen(
            [sys.executable, "-m", "comfy.simulator", "--port", "0", "--gpus", str(SERVERS), "--speed", str(speed),
             "--inventory", str(inventory), "--output-dir", folder], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        try:
            assert process.stdout is not None
            yield [process.stdout.readline().strip() for _ in range(SERVERS)]
        finally:
            process.terminate()
            process.wait(timeout=10)


@dataclass(frozen=True)
class Run:
    makespan: float
    first_image: float
    images: int
    cpu: float  # CPU seconds of this process during the run


async def timed(body: Callable[[Callable[[], None]], Awaitable[None]]) -> Run:
    """Run `body(image_done)` and time it; `image_done()` is called once per finished image."""
    start, cpu_start = time.perf_counter(), time.process_time()
    done: list[float] = []
    await body(lambda: done.append(time.perf_counter() - start))
    return Run(time.perf_counter() - start, min(done, default=0.0), len(done), time.process_time() - cpu_start)


async def run_pool(speed: float, batches: int = 1, warm_up: bool = False) -> Run:
    """`batches` pool batches (after one untimed batch when `warm_up`) on fresh simulators."""
    async with simulators(speed) as urls, ServerPool(urls, health_interval=3600) as pool:
        async def batch(key: str, image_done: Callable[[], None]) -> None:
            async with aclosing(pool.run(pool_jobs(), key)) as events:
                async for event in events:
                    if isinstance(event, ImageResult):
                        image_done()
        if warm_up:
            await batch("warm-up", lambda: None)

        async def body(image_done: Callable[[], None]) -> None:
            for index in range(batches):
                await batch(f"bench-{index}", image_done)
        return await timed(body)


async def run_round_robin(speed: float, order: str) -> Run:
    """Single-image prompts dealt round-robin, one in flight per server."""
    specs = single_images(order)
    async with simulators(speed) as urls:
        clients = [ComfyClient(url, name=f"gpu-{i}") for i, url in enumerate(urls)]
        try:
            async def body(image_done: Callable[[], None]) -> None:
                async def serve(index: int) -> None:
                    for spec in specs[index::SERVERS]:
                        await clients[index].run(build_workflow(spec))
                        image_done()
                await asyncio.gather(*(serve(i) for i in range(SERVERS)))
            return await timed(body)
        finally:
            await asyncio.gather(*(c.close() for c in clients))


def scheduler_estimate(scale: float) -> float:
    """The pool's own plan for this workload (its cost model has no decode time), scaled."""
    slots = [ServerSlot(f"gpu-{i}", frozenset(CHECKPOINTS)) for i in range(SERVERS)]
    return simulate(pool_jobs(), slots).makespan * scale


async def measure(scale: float) -> None:
    bound = lower_bound(pool_jobs(), TimeModel(scale=scale), SERVERS)
    print(f"workload: 20 images, 3 checkpoints (7/7/6), jobs <= 4, {SERVERS} simulated GPUs (own process), "
          f"time scale {scale}")
    print(f"lower bound              {bound:6.2f} s  (= {bound / scale:.1f} s at real GPU pace)")
    estimate = scheduler_estimate(scale)
    print(f"scheduler's own estimate {estimate:6.2f} s  ratio to bound {estimate / bound:.2f}")
    pool = await run_pool(1 / scale)
    print(f"pool                     {pool.makespan:6.2f} s  first image {pool.first_image:5.2f} s  "
          f"{pool.images} images  ratio to bound {pool.makespan / bound:.2f}")
    for order, label in (("plan order", "round-robin (baseline)"), ("interleaved", "round-robin interleaved")):
        rr = await run_round_robin(1 / scale, order)
        print(f"{label:<25}{rr.makespan:6.2f} s  first image {rr.first_image:5.2f} s  "
              f"{rr.images} images  pool is {rr.makespan / pool.makespan:.2f}x faster")
    overhead = await run_pool(0.0, OVERHEAD_BATCHES, warm_up=True)
    print(f"overhead at speed 0      {1000 * overhead.makespan / overhead.images:6.2f} ms/image wall, "
          f"{1000 * overhead.cpu / overhead.images:.2f} ms/image CPU of the app process, over {overhead.images} images")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=DEFAULT_SCALE,
                        help="simulated GPU seconds per real second (1 = real GPU pace)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(measure(args.scale))


if __name__ == "__main__":
    main()
