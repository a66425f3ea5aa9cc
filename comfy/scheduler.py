"""Checkpoint-affinity scheduling of pool jobs over servers — pure, no I/O, no clock.

Why this shape: loading a checkpoint costs seconds (3 s sd15, 6 s sdxl on a typical GPU) while an
image costs about one, so the order in which a server sees checkpoints matters more than anything.
Jobs are grouped by (checkpoint, LoRA set); whole groups are assigned longest-first to the server
that would finish them soonest (load cost counted, so a server that already holds the checkpoint
wins). Whole groups are too coarse to balance (20 images over 3 checkpoints on 2 servers), so
single jobs then move from the server that finishes last to another while that lowers the
estimated makespan, accepting an extra load where it pays. At run time a server that runs dry
steals jobs from the tail of the most loaded server's queue as long as it would finish them sooner. Servers pull one job at a
time (`next_for`), so at most one prompt is ever in flight per server.

The caller passes `now` (any monotonic clock) so the same code drives the live pool and the
`simulate` estimate behind `ServerPool.plan`.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from comfy.models import PoolJob
from comfy.workflow import hires_steps

log = logging.getLogger(__name__)

GroupKey = tuple[str, tuple[tuple[str, float], ...]]  # checkpoint, LoRAs with strengths
REFERENCE_PIXELS = 512 * 512
_MIN_GAIN = 1e-6  # seconds a move must save, so rebalancing always terminates


def group_key(job: PoolJob) -> GroupKey:
    """Jobs with the same key run back to back without reloading anything."""
    return job.spec.checkpoint, tuple(sorted((lora.name, lora.strength) for lora in job.spec.loras))


def ewma(previous: float | None, sample: float, alpha: float = 0.4) -> float:
    """Exponentially weighted moving average; the first sample replaces the seed entirely."""
    return sample if previous is None else (1 - alpha) * previous + alpha * sample


@dataclass(frozen=True)
class CostModel:
    """Estimated GPU seconds of a job on a nominal server (a server's `speed` scales it)."""

    checkpoint_load: Mapping[str, float] = field(default_factory=lambda: {"sd15": 3.0, "sdxl": 6.0})
    lora_change: float = 0.3
    step_seconds: float = 0.05  # one sampler step of one 512² image
    batch_exponent: float = 0.8  # a batch of n costs n**0.8 single images on a GPU

    def switch_seconds(self, job: PoolJob, loaded: GroupKey | None) -> float:
        """Seconds to get from what is loaded to what the job needs."""
        key = group_key(job)
        seconds = 0.0
        if loaded is None or loaded[0] != key[0]:
            seconds += self.checkpoint_load.get(job.family, max(self.checkpoint_load.values()))
        if loaded is None or loaded[1] != key[1]:
            seconds += self.lora_change if key[1] or loaded else 0.0
        return seconds

    def sample_seconds(self, job: PoolJob) -> float:
        """Seconds of sampling for the whole job (both passes when hires is set)."""
        spec = job.spec
        batch = max(spec.batch_size, 1) ** self.batch_exponent
        denoise = spec.refine_from.denoise if spec.refine_from is not None else spec.denoise
        first = max(1.0, spec.steps * denoise) * spec.width * spec.height / REFERENCE_PIXELS
        second = 0.0
        if spec.hires_scale:
            second = hires_steps(spec.steps) * 0.5 * spec.width * spec.height * spec.hires_scale**2 / REFERENCE_PIXELS
        return (first + second) * self.step_seconds * batch

    def job_seconds(self, job: PoolJob, loaded: GroupKey | None) -> float:
        return self.switch_seconds(job, loaded) + self.sample_seconds(job)


@dataclass
class ServerSlot:
    """What the scheduler knows of one live server."""

    name: str
    checkpoints: frozenset[str]
    loras: frozenset[str] = frozenset()
    loaded: GroupKey | None = None  # what the server last ran (kept in VRAM by ComfyUI)
    speed: float = 1.0  # measured seconds / estimated seconds
    queue: list[PoolJob] = field(default_factory=list)
    running_until: float = 0.0  # estimated end of the job in flight (0 when idle)
    running_estimate: float = 0.0

    def can_run(self, job: PoolJob) -> bool:
        return job.spec.checkpoint in self.checkpoints and all(l.name in self.loras for l in job.spec.loras)


class Scheduler:
    """Assigns the jobs of one batch to servers and hands them out one at a time."""

    def __init__(self, jobs: Iterable[PoolJob], servers: Iterable[ServerSlot], cost: CostModel | None = None) -> None:
        self.cost = cost or CostModel()
        self.slots: dict[str, ServerSlot] = {s.name: s for s in servers}
        self.unplaceable: list[PoolJob] = self.assign(list(jobs), now=0.0)

    # -------------------------------------------------------------- estimates

    def estimate(self, slot: ServerSlot, job: PoolJob, loaded: GroupKey | None) -> float:
        return self.cost.job_seconds(job, loaded) * slot.speed

    def backlog(self, slot: ServerSlot, now: float, queue: list[PoolJob] | None = None) -> float:
        """Estimated seconds until `slot` has finished its job in flight and its whole queue (or
        `queue` instead of the one it has)."""
        total = max(0.0, slot.running_until - now)
        loaded = slot.loaded
        for job in slot.queue if queue is None else queue:
            total += self.estimate(slot, job, loaded)
            loaded = group_key(job)
        return total

    def _tail_key(self, slot: ServerSlot) -> GroupKey | None:
        return group_key(slot.queue[-1]) if slot.queue else slot.loaded

    # -------------------------------------------------------------- assignment

    def assign(self, jobs: list[PoolJob], now: float) -> list[PoolJob]:
        """Place jobs group by group (largest first); returns the jobs no server can run."""
        groups: dict[GroupKey, list[PoolJob]] = {}
        for job in jobs:
            groups.setdefault(group_key(job), []).append(job)
        # Most constrained groups first (fewest servers can run them), then longest first (LPT).
        order = sorted(groups.values(), key=lambda g: (
            sum(s.can_run(g[0]) for s in self.slots.values()),
            -sum(self.cost.job_seconds(j, None) for j in g),
        ))
        unplaceable: list[PoolJob] = []
        for group in order:
            capable = [s for s in self.slots.values() if s.can_run(group[0])]
            if not capable:
                log.warning("no live server has %s: %d job(s) unplaceable", group[0].spec.checkpoint, len(group))
                unplaceable.extend(group)
                continue
            key = group_key(group[0])
            best = min(capable, key=lambda s: (self._finish_with(s, group, now), s.loaded != key, s.name))
            reason = "has it loaded" if self._tail_key(best) == key else "soonest estimated finish"
            best.queue.extend(group)
            log.info("assign %d job(s) of %s to %s (%s; backlog %.1fs)",
                     len(group), group[0].spec.checkpoint, best.name, reason, self.backlog(best, now))
        while self._move_one_job(now):
            pass
        return unplaceable

    def _move_one_job(self, now: float) -> bool:
        """Move the one queued job whose move most lowers the estimated makespan; False if none does."""
        finish = {name: self.backlog(slot, now) for name, slot in self.slots.items()}
        if not finish:
            return False
        source = self.slots[max(finish, key=finish.__getitem__)]
        best: tuple[float, int, ServerSlot] | None = None
        for index, job in enumerate(source.queue):
            source_after = self.backlog(source, now, source.queue[:index] + source.queue[index + 1:])
            for target in self.slots.values():
                if target is source or not target.can_run(job):
                    continue
                target_after = self.backlog(target, now, _with_job(target.queue, job))
                others = (f for name, f in finish.items() if name not in (source.name, target.name))
                makespan = max(source_after, target_after, *others)
                if makespan < (best[0] if best else finish[source.name]) - _MIN_GAIN:
                    best = (makespan, index, target)
        if best is None:
            return False
        makespan, index, target = best
        job = source.queue.pop(index)
        target.queue = _with_job(target.queue, job)
        log.info("move job %s (%s) from %s to %s: estimated makespan %.1fs -> %.1fs", job.job_id,
                 job.spec.checkpoint, source.name, target.name, finish[source.name], makespan)
        return True

    def _finish_with(self, slot: ServerSlot, group: list[PoolJob], now: float) -> float:
        loaded = self._tail_key(slot)
        extra = 0.0
        for job in group:
            extra += self.estimate(slot, job, loaded)
            loaded = group_key(job)
        return self.backlog(slot, now) + extra

    # -------------------------------------------------------------- dispatch

    def next_for(self, name: str, now: float) -> PoolJob | None:
        """The job server `name` should run now (stealing if its queue is empty), or None."""
        slot = self.slots.get(name)
        if slot is None:
            return None
        if not slot.queue:
            self._steal(slot, now)
        if not slot.queue:
            return None
        job = slot.queue.pop(0)
        slot.running_estimate = self.estimate(slot, job, slot.loaded)
        slot.running_until = now + slot.running_estimate
        slot.loaded = group_key(job)
        return job

    def job_done(self, name: str, measured_seconds: float | None = None) -> None:
        """The server finished its job; a measured duration updates its speed (EWMA)."""
        slot = self.slots.get(name)
        if slot is None:
            return
        if measured_seconds is not None and slot.running_estimate > 0:
            slot.speed = ewma(slot.speed, measured_seconds / (slot.running_estimate / slot.speed))
        slot.running_until = slot.running_estimate = 0.0

    def _steal(self, thief: ServerSlot, now: float) -> None:
        victims = sorted((s for s in self.slots.values() if s is not thief and s.queue),
                         key=lambda s: -self.backlog(s, now))
        for victim in victims:
            stolen: list[PoolJob] = []
            thief_busy = 0.0
            loaded = thief.loaded
            while victim.queue and thief.can_run(victim.queue[-1]):
                job = victim.queue[-1]
                finish_here = thief_busy + self.estimate(thief, job, loaded)
                if finish_here >= self.backlog(victim, now):
                    break
                stolen.insert(0, victim.queue.pop())
                thief_busy, loaded = finish_here, group_key(job)
            if stolen:
                thief.queue.extend(stolen)
                log.info("%s steals %d job(s) of %s from %s (idle; finishes them sooner)",
                         thief.name, len(stolen), stolen[0].spec.checkpoint, victim.name)
                return

    # -------------------------------------------------------------- changes

    def clear(self) -> None:
        """Forget every queued job (the batch was cancelled)."""
        for slot in self.slots.values():
            slot.queue.clear()

    def add_server(self, slot: ServerSlot) -> None:
        """A server (re)joined: it gets work by stealing on its first `next_for`."""
        self.slots[slot.name] = slot

    def drop_server(self, name: str, now: float, unfinished: Iterable[PoolJob] = ()) -> list[PoolJob]:
        """A server died: its queue and `unfinished` jobs move to live servers. Returns the jobs no
        live server can run."""
        slot = self.slots.pop(name, None)
        orphans = list(unfinished) + (slot.queue if slot else [])
        if orphans:
            log.info("%s is gone: re-placing %d job(s)", name, len(orphans))
        return self.assign(orphans, now)

    def forget_models(self, name: str, missing: set[str], now: float, unfinished: Iterable[PoolJob] = ()) -> list[PoolJob]:
        """Server `name` lacks models its inventory listed: move the jobs needing them elsewhere."""
        rerun = list(unfinished)  # read once: a generator would be spent by its first use
        slot = self.slots.get(name)
        if slot is None:
            return self.assign(rerun, now)
        slot.checkpoints = slot.checkpoints - missing
        slot.loras = slot.loras - missing
        moved = [job for job in slot.queue if not slot.can_run(job)]
        slot.queue = [job for job in slot.queue if slot.can_run(job)]
        log.info("%s lacks %s: re-placing %d job(s)", name, sorted(missing), len(moved) + len(rerun))
        return self.assign(rerun + moved, now)


def _with_job(queue: list[PoolJob], job: PoolJob) -> list[PoolJob]:
    """`queue` with `job` right after the last job of its group (no extra load), else at the end."""
    key = group_key(job)
    last = max((i for i, queued in enumerate(queue) if group_key(queued) == key), default=len(queue) - 1)
    return queue[:last + 1] + [job] + queue[last + 1:]


@dataclass(frozen=True)
class Simulation:
    """Outcome of `simulate`: images per server and the estimated makespan in seconds."""

    images: dict[str, int]
    makespan: float
    unplaceable: tuple[str, ...] = ()


def simulate(jobs: list[PoolJob], servers: list[ServerSlot], cost: CostModel | None = None) -> Simulation:
    """Run the scheduler against its own cost model (no I/O) — the pool's `plan`."""
    scheduler = Scheduler(jobs, servers, cost)
    images = {s.name: 0 for s in servers}
    events = [(0.0, s.name) for s in servers]
    makespan = 0.0
    while events:
        now, name = heapq.heappop(events)
        scheduler.job_done(name)
        job = scheduler.next_for(name, now)
        if job is None:
            continue
        end = now + scheduler.slots[name].running_estimate
        images[name] += job.spec.batch_size
        makespan = max(makespan, end)
        heapq.heappush(events, (end, name))
    return Simulation(images, makespan, tuple(j.job_id for j in scheduler.unplaceable))
