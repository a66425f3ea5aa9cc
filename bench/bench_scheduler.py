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

Fast drafts: the same 20 images as an SDXL draft planned by the app (its accelerator choice and
settings), with an SDXL Lightning LoRA on the servers vs without, on the same simulated GPUs:
through the scheduler on the time model (deterministic), then live, the median of
`FAST_DRAFT_RUNS` runs of each side. Warm-ups draw other seeds, and round-robin's one-image
prompts each make one image of the jobs: an identical prompt is answered from the server's cache.

Also: time to first image, and the app-side overhead per image with a zero-latency simulator
(`--speed 0`, every GPU cost 0): wall time per image, and this process's CPU time per image.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from statistics import median

from comfy.client import ComfyClient
from comfy.models import GenerationSpec, ImageResult, PoolJob
from comfy.pool import ServerPool
from comfy.costs import changes
from comfy.scheduler import CostLearner, GroupKey, ServerSlot, simulate
from comfy.simulator import TimeModel
from comfy.models import LoraSpec, ServerInventory
from comfy.pieces import build_piece_workflow
from draftgrid.batch_planner import BatchPlanner
from draftgrid.catalog import Catalog
from draftgrid.planning import CheckpointGroup, plan_txt2img
from draftgrid.schemas import GenerateRequest
from learning.lora import lora_info_from_metadata

DEFAULT_SCALE = 0.5
CHECKPOINTS = ("alpha.safetensors", "beta.safetensors", "gamma.safetensors")
SPLIT = {"alpha.safetensors": (4, 3), "beta.safetensors": (4, 3), "gamma.safetensors": (4, 2)}
SERVERS = 2
OVERHEAD_BATCHES = 5
WARM_UP_SEEDS = 1000  # what a warm-up adds to every seed
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


def single_prompts(jobs: Sequence[PoolJob]) -> list[GenerationSpec]:
    """Every image of `jobs` as a one-image prompt making that very image (its seed, its batch
    index: a piece, comfy/pieces.py). Copies of the job's spec would be identical prompts, which
    a server answers from its cache without running them."""
    return [replace(job.spec, batch_size=1, first_index=job.spec.first_index + k)
            for job in jobs for k in range(job.spec.batch_size)]


def reseeded(jobs: Sequence[PoolJob]) -> list[PoolJob]:
    """The same jobs with other seeds: a warm-up that loads what they need without leaving the
    very prompts in the servers' caches (warm means the models loaded, not the answers cached)."""
    return [replace(job, spec=replace(job.spec, seed=job.spec.seed + WARM_UP_SEEDS)) for job in jobs]


def prompt_seconds(job: PoolJob, model: TimeModel, load: bool) -> float:
    """What one prompt of `job` takes under the simulator's time model, with or without a load."""
    spec = job.spec
    return model.txt2img_seconds(job.family, spec.steps, spec.width, spec.height, spec.batch_size, load, False,
                                 spec.cfg)


def lower_bound(jobs: list[PoolJob], models: Sequence[TimeModel], loaded: Sequence[str | None] = ()) -> float:
    """Seconds no schedule of `jobs` can beat on one or two servers with these time models
    (`loaded[i]`: the checkpoint server i holds at the start).

    Any schedule has a pattern: which servers run some job of each checkpoint, and each such
    server loads it once unless it holds it already. For every pattern, the fluid bound: the
    work split freely (fractions of jobs too) among the servers the pattern allows, each part at
    the cost of the server doing it, its loads added; the bound is the least of these over all
    patterns, and at least the longest job where it is cheapest (its load counted unless held).
    """
    if not 1 <= len(models) <= 2:
        raise ValueError("the exact fluid bound is for one or two servers")
    held = list(loaded) + [None] * (len(models) - len(loaded))
    servers = range(len(models))
    checkpoints = sorted({j.spec.checkpoint for j in jobs})
    load = [m.load_seconds(jobs[0].family, True, False) for m in models]
    longest = max(min(prompt_seconds(job, models[i], job.spec.checkpoint != held[i]) for i in servers)
                  for job in jobs)
    choices = [subset for subset in ((0,), (1,), (0, 1)) if all(i in servers for i in subset)]
    best = float("inf")
    for pattern in itertools.product(choices, repeat=len(checkpoints)):
        touches = dict(zip(checkpoints, pattern))
        fixed = [sum(load[i] for ck, who in touches.items() if i in who and held[i] != ck) for i in servers]
        free: list[tuple[float, float]] = []
        for job in jobs:
            cost = [prompt_seconds(job, models[i], False) for i in servers]
            who = touches[job.spec.checkpoint]
            if len(who) == 1:
                fixed[who[0]] += cost[who[0]]
            else:
                free.append((cost[0], cost[1]))
        best = min(best, _fluid(fixed, free))
    return max(best, longest)


def _fluid(fixed: list[float], free: list[tuple[float, float]]) -> float:
    """Least T with each server's fixed seconds plus its share of the `free` items (seconds on
    server 0, on server 1; split freely) within T. The second server takes the items relatively
    cheapest for it first (ascending c1 / c0); bisection on T."""
    if len(fixed) == 1:
        return fixed[0] + sum(c0 for c0, _ in free)
    items = sorted(free, key=lambda c: c[1] / c[0])

    def feasible(t: float) -> bool:
        left, rest = t - fixed[1], 0.0
        if left < 0:
            return False
        for c0, c1 in items:
            share = min(1.0, left / c1) if c1 > 0 else 1.0
            left -= share * c1
            rest += (1 - share) * c0
        return fixed[0] + rest <= t

    low, high = 0.0, sum(fixed) + sum(c0 + c1 for c0, c1 in items)
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (low, middle) if feasible(middle) else (middle, high)
    return high


def bench_inventory(family: str = "sd15", loras: Sequence[dict] = ()) -> dict:
    """The simulated servers' models: the bench's checkpoints as `family`, and `loras`."""
    return {"checkpoints": [{"name": c, "family": family} for c in CHECKPOINTS], "loras": list(loras)}


@asynccontextmanager
async def simulators(speed: float, prompt_overhead: float = 0.0, gpu_factors: Sequence[float] = (1.0,),
                     models: dict | None = None) -> AsyncIterator[list[str]]:
    """Fresh simulated servers in a process of their own (models: `bench_inventory()` unless
    given); yields their URLs."""
    with tempfile.TemporaryDirectory(prefix="bench-sim-") as folder:
        inventory = Path(folder) / "inventory.json"
        inventory.write_text(json.dumps(models or bench_inventory()))
        process = subprocess.Popen(
            [sys.executable, "-m", "comfy.simulator", "--port", "0", "--gpus", str(SERVERS), "--speed", str(speed),
             "--prompt-overhead", str(prompt_overhead), "--gpu-factors", ",".join(map(str, gpu_factors)),
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
    per_server: dict[str, int] = field(default_factory=dict)  # images
    busy: dict[str, float] = field(default_factory=dict)  # seconds its prompts ran

    def shares(self) -> str:
        return ", ".join(f"{name} {count / max(self.images, 1):.0%} of images, busy {self.busy.get(name, 0.0) / self.makespan:.0%}"
                         for name, count in sorted(self.per_server.items()))


ImageDone = Callable[[str, str, float], None]  # server, prompt id, seconds the prompt ran


async def timed(body: Callable[[ImageDone], Awaitable[None]]) -> Run:
    """Run `body(image_done)` and time it; `image_done(server, prompt_id, seconds)` is called
    once per finished image."""
    start, cpu_start = time.perf_counter(), time.process_time()
    done: list[float] = []
    per_server: dict[str, int] = {}
    prompts: dict[tuple[str, str], float] = {}

    def image_done(server: str, prompt_id: str, seconds: float) -> None:
        done.append(time.perf_counter() - start)
        per_server[server] = per_server.get(server, 0) + 1
        prompts[(server, prompt_id)] = seconds

    await body(image_done)
    busy: dict[str, float] = {}
    for (server, _), seconds in prompts.items():
        busy[server] = busy.get(server, 0.0) + seconds
    return Run(time.perf_counter() - start, min(done, default=0.0), len(done), time.process_time() - cpu_start,
               per_server, busy)


async def pool_batch(pool: ServerPool, jobs: list[PoolJob], key: str, image_done: ImageDone) -> None:
    async with aclosing(pool.run(jobs, key)) as events:
        async for event in events:
            if isinstance(event, ImageResult):
                image_done(event.server, event.prompt_id, event.seconds)


async def run_pool(speed: float, batches: int = 1, warm_up: bool = False, jobs: Callable[[], list[PoolJob]] = pool_jobs,
                   models: dict | None = None) -> Run:
    """`batches` pool batches of `jobs()` on fresh simulators, after one untimed batch of them
    (`reseeded`) when `warm_up`."""
    async with simulators(speed, models=models) as urls, ServerPool(urls, health_interval=3600) as pool:
        async def batch(key: str, image_done: ImageDone) -> None:
            await pool_batch(pool, jobs(), key, image_done)
        if warm_up:
            await pool_batch(pool, reseeded(jobs()), "warm-up", lambda *_: None)

        async def body(image_done: ImageDone) -> None:
            for index in range(batches):
                await batch(f"bench-{index}", image_done)
        return await timed(body)


async def run_round_robin(speed: float, order: str, specs: list[GenerationSpec] | None = None,
                          prompt_overhead: float = 0.0, gpu_factors: Sequence[float] = (1.0,),
                          models: dict | None = None, warm_up: bool = False) -> Run:
    """Single-image prompts dealt round-robin, one in flight per server (after the same prompts
    with other seeds, untimed, when `warm_up`: each server then holds what its last one loaded)."""
    specs = specs if specs is not None else single_images(order)
    async with simulators(speed, prompt_overhead, gpu_factors, models) as urls:
        clients = [ComfyClient(url, name=f"gpu-{i}") for i, url in enumerate(urls)]
        try:
            async def body(image_done: ImageDone, prompts: list[GenerationSpec] = specs) -> None:
                async def serve(index: int) -> None:
                    for n, spec in enumerate(prompts[index::SERVERS]):
                        started = time.perf_counter()
                        await clients[index].run(build_piece_workflow(spec))
                        image_done(f"gpu-{index}", str(n), time.perf_counter() - started)
                await asyncio.gather(*(serve(i) for i in range(SERVERS)))
            if warm_up:
                await body(lambda *_: None, [replace(spec, seed=spec.seed + WARM_UP_SEEDS) for spec in specs])
            return await timed(body)
        finally:
            await asyncio.gather(*(c.close() for c in clients))


def scheduler_estimate(scale: float) -> float:
    """The pool's own plan for this workload (its cost model has no decode time), scaled."""
    slots = [ServerSlot(f"gpu-{i}", frozenset(CHECKPOINTS)) for i in range(SERVERS)]
    return simulate(pool_jobs(), slots).makespan * scale


# Five consecutive mixed batches on two servers whose real costs differ from the nominal model
# the scheduler starts from: a fixed overhead per prompt, and the second GPU 1.5x slower.
REAL_OVERHEAD = 0.5  # seconds per prompt besides GPU work (validation, decode, save, fetch)
GPU_FACTORS = (1.0, 1.5)
ALPHA, BETA, GAMMA = CHECKPOINTS
MIXED: tuple[tuple[int, int, dict[str, tuple[int, ...]]], ...] = (  # side, steps, job sizes per checkpoint
    (512, 20, {ALPHA: (4, 3), BETA: (4, 3), GAMMA: (3, 3)}),
    (512, 12, {BETA: (4, 4), GAMMA: (4, 4)}),
    (768, 12, {GAMMA: (4, 3), ALPHA: (4, 3), BETA: (3, 3)}),
    (512, 20, {ALPHA: (4, 4, 4)}),
    (640, 16, {BETA: (4, 3), ALPHA: (3, 3), GAMMA: (4, 3)}),
)


def mixed_batch(index: int) -> list[PoolJob]:
    side, steps, groups = MIXED[index]
    return [PoolJob(f"m{index}-{ck[:1]}{k}", replace(_spec(ck, size, 100 + k), width=side, height=side, steps=steps))
            for ck, sizes in groups.items() for k, size in enumerate(sizes)]


def real_models(scale: float = 1.0) -> list[TimeModel]:
    return [TimeModel(prompt_overhead=REAL_OVERHEAD, gpu_factor=factor, scale=scale) for factor in GPU_FACTORS]


@dataclass(frozen=True)
class BatchOutcome:
    images: dict[str, int]
    busy: dict[str, float]
    makespan: float
    bound: float


def replay(models: Sequence[TimeModel], batches: Sequence[list[PoolJob]] | None = None,
           loras: frozenset[str] = frozenset()) -> list[BatchOutcome]:
    """Consecutive batches (the five mixed ones unless given) through the pool's scheduler and
    its learners, on servers with the bench's checkpoints and `loras`, every prompt taking what
    the simulator's time model says (no I/O, deterministic): what the live run shows without the
    noise of a shared machine. Learners and loaded checkpoints carry over."""
    names = [f"gpu-{i}" for i in range(len(models))]
    learners = {name: CostLearner() for name in names}
    loaded: dict[str, GroupKey | None] = {name: None for name in names}

    def actual(server: str, job: PoolJob, before: GroupKey | None) -> float:
        checkpoint, loras = changes(job, before)
        spec = job.spec
        return models[names.index(server)].txt2img_seconds(job.family, spec.steps, spec.width, spec.height,
                                                           spec.batch_size, checkpoint, loras, spec.cfg)
    outcomes = []
    for jobs in batches if batches is not None else [mixed_batch(index) for index in range(len(MIXED))]:
        held = [loaded[name][0] if loaded[name] else None for name in names]  # type: ignore[index]
        slots = [ServerSlot(name, frozenset(CHECKPOINTS), loras, loaded=loaded[name], learner=learners[name])
                 for name in names]
        result = simulate(jobs, slots, actual=actual)
        learners = {slot.name: slot.learner for slot in slots}
        loaded = {slot.name: slot.loaded for slot in slots}
        outcomes.append(BatchOutcome(result.images, result.busy, result.makespan, lower_bound(jobs, models, held)))
    return outcomes


async def measure_mixed(scale: float) -> None:
    print(f"\nfive mixed batches, real costs: {REAL_OVERHEAD} s per prompt, GPU factors {GPU_FACTORS} "
          f"(the scheduler starts from the nominal model), time scale {scale}")
    for index, outcome in enumerate(replay(real_models())):
        total = sum(outcome.images.values())
        shares = ", ".join(f"{name} {count / total:.0%}" for name, count in sorted(outcome.images.items()))
        print(f"  time model, batch {index}: {outcome.makespan * scale:6.2f} s  bound {outcome.bound * scale:6.2f} s  "
              f"ratio {outcome.makespan / outcome.bound:.2f}  images {shares}")
    async with simulators(1 / scale, REAL_OVERHEAD, GPU_FACTORS) as urls, \
            ServerPool(urls, health_interval=3600) as pool:
        runs, bounds = [], []
        for index in range(len(MIXED)):
            held = [status.loaded_checkpoint for status in pool.statuses()]
            jobs = mixed_batch(index)
            bounds.append(lower_bound(jobs, real_models(scale), held))
            runs.append(await timed(lambda image_done, jobs=jobs, index=index:
                                    pool_batch(pool, jobs, f"mixed-{index}", image_done)))
            run = runs[-1]
            print(f"  pool,       batch {index}: {run.makespan:6.2f} s  bound {bounds[-1]:6.2f} s  "
                  f"ratio {run.makespan / bounds[-1]:.2f}  first image {run.first_image:5.2f} s  {run.shares()}")
    images = {name: sum(r.per_server.get(name, 0) for r in runs) for name in sorted(runs[0].per_server)}
    total = sum(images.values())
    print(f"  pool, all five: makespan {sum(r.makespan for r in runs):.2f} s vs bound {sum(bounds):.2f} s "
          f"(ratio {sum(r.makespan for r in runs) / sum(bounds):.2f}); images "
          + ", ".join(f"{name} {count / total:.0%}" for name, count in images.items()))
    rr = await run_round_robin(1 / scale, "plan order", single_prompts(mixed_batch(0)), REAL_OVERHEAD, GPU_FACTORS)
    print(f"  round-robin, batch 0 on fresh servers: {rr.makespan:6.2f} s  first image {rr.first_image:5.2f} s "
          f"(pool's batch 0: first image {runs[0].first_image:5.2f} s)")


# A 20-image SDXL draft as the app plans it, with an SDXL Lightning LoRA on the servers or not.
LIGHTNING = "sdxl_lightning_4step_lora.safetensors"
LIGHTNING_FILE = {"name": LIGHTNING, "family": "sdxl", "metadata": {
    "modelspec.architecture": "stable-diffusion-xl-v1-base/lora", "ss_base_model_version": "sdxl_base_v1-0"}}
FAST_DRAFT_RUNS = 3  # live runs of each side; the median is shown (a shared machine's load moves single runs)
DRAFTS = {"explore, 3 checkpoints 7/7/6, fresh servers": ((7, 7, 6), False),
          "quick, 1 checkpoint, warm servers": ((20,), True)}  # warm: after the batch with other seeds, untimed


def sdxl_draft_jobs(lightning: bool, counts: Sequence[int]) -> list[PoolJob]:
    """The planner's jobs for the draft (its accelerator choice and settings, its chunking)."""
    loras = (lora_info_from_metadata(LIGHTNING, LIGHTNING_FILE["metadata"]),) if lightning else ()
    catalog = Catalog({c: "sdxl" for c in CHECKPOINTS}, loras, (), (),
                      ServerInventory(CHECKPOINTS, tuple(i.name for i in loras), (), ()))
    fast = BatchPlanner.fast_draft("sdxl", list(CHECKPOINTS), catalog)
    settings = BatchPlanner.render_settings("sdxl", "1:1", "draft", GenerateRequest(prompt="a lighthouse"), fast)
    accelerator = (LoraSpec(fast.file, fast.accelerator.strength),) if fast else ()
    groups = [CheckpointGroup(c, n, (), "a lighthouse at dusk") for c, n in zip(CHECKPOINTS, counts)]
    return list(plan_txt2img(groups, negative="blurry", settings=settings, base_seed=100, family="sdxl",
                             accelerator=accelerator).jobs)


def replay_draft(lightning: bool, counts: Sequence[int], warm: bool, scale: float = 1.0) -> BatchOutcome:
    """The draft through the scheduler on the time model (`replay`), after the same batch once
    when `warm`; the timed batch's outcome, in seconds at `scale`."""
    jobs = sdxl_draft_jobs(lightning, counts)
    loras = frozenset(lora.name for job in jobs for lora in job.spec.loras)
    return replay([TimeModel(scale=scale)] * SERVERS, [jobs] * (2 if warm else 1), loras)[-1]


async def measure_fast_drafts(scale: float) -> None:
    models = bench_inventory("sdxl", [LIGHTNING_FILE])
    full, fast = sdxl_draft_jobs(False, (20,))[0].spec, sdxl_draft_jobs(True, (20,))[0].spec
    print(f"\nfast drafts: 20 SDXL draft images at {fast.width}x{fast.height}, {LIGHTNING} on the servers or not "
          f"({full.steps} steps cfg {full.cfg:g} vs {fast.steps} steps cfg {fast.cfg:g}), time scale {scale}")
    gpu = [sum(prompt_seconds(job, TimeModel(), False) for job in sdxl_draft_jobs(on, (20,))) for on in (False, True)]
    print(f"  time model alone (GPU seconds of the sampling and decoding, no loads): {gpu[0]:.1f} s vs {gpu[1]:.1f} s, "
          f"{gpu[0] / gpu[1]:.1f}x")
    for label, (counts, warm) in DRAFTS.items():
        modelled = [replay_draft(on, counts, warm, scale) for on in (False, True)]
        print(f"  {label}, time model through the scheduler: without {modelled[0].makespan:6.2f} s "
              f"(bound {modelled[0].bound:5.2f} s), with {modelled[1].makespan:6.2f} s (bound {modelled[1].bound:5.2f} s): "
              f"{modelled[0].makespan / modelled[1].makespan:.2f}x faster")
        load = os.getloadavg()[0]
        live = [[await run_pool(1 / scale, warm_up=warm, jobs=lambda on=on: sdxl_draft_jobs(on, counts), models=models)
                 for _ in range(FAST_DRAFT_RUNS)] for on in (False, True)]
        singles = single_prompts(sdxl_draft_jobs(True, counts))
        robin = [await run_round_robin(1 / scale, "plan order", singles, models=models, warm_up=warm)
                 for _ in range(FAST_DRAFT_RUNS)]
        without, with_it, rr = (median(r.makespan for r in runs) for runs in (*live, robin))
        print(f"  {label}, live (median of {FAST_DRAFT_RUNS}, load average {load:.1f} -> {os.getloadavg()[0]:.1f}): "
              f"without {_spread(live[0])}, with {_spread(live[1])}: {without / with_it:.2f}x faster; "
              f"round-robin with it {_spread(robin)}; first image: pool {median(r.first_image for r in live[1]):.2f} s "
              f"vs round-robin {median(r.first_image for r in robin):.2f} s")


def _spread(runs: Sequence[Run]) -> str:
    """The median makespan of `runs` and their range."""
    spans = sorted(r.makespan for r in runs)
    return f"{median(spans):5.2f} s ({spans[0]:.2f}-{spans[-1]:.2f})"


async def measure(scale: float) -> None:
    bound = lower_bound(pool_jobs(), [TimeModel(scale=scale)] * SERVERS)
    print(f"workload: 20 images, 3 checkpoints (7/7/6), jobs <= 4, {SERVERS} simulated GPUs (own process), "
          f"time scale {scale}")
    print(f"lower bound              {bound:6.2f} s  (= {bound / scale:.1f} s at real GPU pace)")
    estimate = scheduler_estimate(scale)
    print(f"scheduler's own estimate {estimate:6.2f} s  ratio to bound {estimate / bound:.2f}")
    pool = await run_pool(1 / scale)
    print(f"pool                     {pool.makespan:6.2f} s  first image {pool.first_image:5.2f} s  "
          f"{pool.images} images  ratio to bound {pool.makespan / bound:.2f}  ({pool.shares()})")
    for order, label in (("plan order", "round-robin (baseline)"), ("interleaved", "round-robin interleaved")):
        rr = await run_round_robin(1 / scale, order)
        print(f"{label:<25}{rr.makespan:6.2f} s  first image {rr.first_image:5.2f} s  "
              f"{rr.images} images  pool is {rr.makespan / pool.makespan:.2f}x faster")
        if order == "plan order":
            print(f"{'':25}first image: pool {pool.first_image:.2f} s vs round-robin {rr.first_image:.2f} s "
                  f"(ratio {pool.first_image / rr.first_image:.2f})")
    overhead = await run_pool(0.0, OVERHEAD_BATCHES, warm_up=True)
    print(f"overhead at speed 0      {1000 * overhead.makespan / overhead.images:6.2f} ms/image wall, "
          f"{1000 * overhead.cpu / overhead.images:.2f} ms/image CPU of the app process, over {overhead.images} images")
    await measure_mixed(scale)
    await measure_fast_drafts(scale)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=DEFAULT_SCALE,
                        help="simulated GPU seconds per real second (1 = real GPU pace)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(measure(args.scale))


if __name__ == "__main__":
    main()
