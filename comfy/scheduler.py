"""Checkpoint-affinity scheduling of pool jobs over servers — pure, no I/O, no clock.

Why this shape: loading a checkpoint costs seconds (3 s sd15, 6 s sdxl on a typical GPU) while an
image costs about one, so the order in which a server sees checkpoints matters more than anything.
Jobs are grouped by (checkpoint, LoRA set); whole groups are assigned longest-first to the server
that would finish them soonest (load cost counted, so a server that already holds the checkpoint
wins). Whole groups are too coarse to balance (20 images over 3 checkpoints on 2 servers), so
single jobs then move from the server that finishes last to another while that lowers the
estimated makespan, accepting an extra load where it pays. At run time a server that runs dry
steals jobs from the tail of the most loaded server's queue as long as it would finish them sooner,
and never starves: when the estimates say it would finish nothing sooner but another server has
more queued than its next job, it takes one anyway (an estimate can be wrong; a server that never
runs is never measured again). Servers pull one job at a time (`next_for`), so at most one prompt
is ever in flight per server.

The first image comes sooner: each server that could show the batch's first image (estimated
within `FIRST_IMAGE_RACE` of the soonest) starts on one image of its first job and runs the rest of
that job as one prompt after — a piece that makes the very same images (comfy/pieces.py) — so the
first thumbnail comes after a load and one image, as with round-robin's single-image prompts,
while the batch sizes that use the GPU's batch speed-up come right after.

Estimates come from each server's own `CostLearner` (comfy/costs.py): load, per-prompt overhead
and sampling terms learnt separately from its measured prompts, not one speed factor. The
`cost` given to the Scheduler is the nominal model; it only orders groups (longest first).

The caller passes `now` (any monotonic clock) so the same code drives the live pool and the
`simulate` estimate behind `ServerPool.plan`.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from comfy.costs import CostLearner, CostModel, GroupKey, Observation, group_key
from comfy.models import PoolJob
from comfy.pieces import splits_exactly

__all__ = ["CostLearner", "CostModel", "GroupKey", "Scheduler", "ServerSlot", "Simulation", "ewma", "group_key",
           "simulate"]

log = logging.getLogger(__name__)

_MIN_GAIN = 1e-6  # seconds a move must save, so rebalancing always terminates
MAX_PLANS = 64  # up to this many ways of giving groups to servers are all tried; beyond, greedy
FIRST_IMAGE_RACE = 1.25  # servers whose first image is estimated within this of the soonest start small
# A batch re-plans when what a server learnt moves a term of its cost model by more than this
# (relative) since the batch last planned: every finished job teaches its server, and with 20
# batches running, re-planning each of them on every job was a quarter of the app's CPU under load
# (bench_load, py-spy) while a few per cent of change moves nothing.
REPLAN_CHANGE = 0.1


def ewma(previous: float | None, sample: float, alpha: float = 0.4) -> float:
    """Exponentially weighted moving average; the first sample replaces the seed entirely."""
    return sample if previous is None else (1 - alpha) * previous + alpha * sample


@dataclass
class ServerSlot:
    """What the scheduler knows of one live server."""

    name: str
    checkpoints: frozenset[str]  # every checkpoint and split-model file it lists
    loras: frozenset[str] = frozenset()
    loaded: GroupKey | None = None  # what the server last ran (kept in VRAM by ComfyUI)
    learner: CostLearner = field(default_factory=CostLearner)  # what its prompts cost, as measured
    queue: list[PoolJob] = field(default_factory=list)
    running_until: float = 0.0  # estimated end of the job in flight (0 when idle)
    running_estimate: float = 0.0
    running: tuple[PoolJob, GroupKey | None] | None = None  # the job in flight and what was loaded before it
    started: bool = False  # it took a job of this batch already
    planned: CostModel | None = None  # the cost model this batch's queues were last planned with

    @property
    def cost(self) -> CostModel:
        return self.learner.model

    def can_run(self, job: PoolJob) -> bool:
        return (all(name in self.checkpoints for name in job.spec.model_files)
                and all(l.name in self.loras for l in job.spec.loras))


class Scheduler:
    """Assigns the jobs of one batch to servers and hands them out one at a time."""

    def __init__(self, jobs: Iterable[PoolJob], servers: Iterable[ServerSlot], cost: CostModel | None = None) -> None:
        self.cost = cost or CostModel()
        self.slots: dict[str, ServerSlot] = {s.name: s for s in servers}
        self.pieces: dict[str, int] = {}  # job id -> pieces not yet ended, for jobs split in more than one
        self.first_image: frozenset[str] = frozenset()  # the servers that start on one image (`_first_piece`)
        self._estimates: dict[tuple[int, int, GroupKey | None], tuple[CostModel, PoolJob, float]] = {}
        self.unplaceable: list[PoolJob] = self.assign(list(jobs), now=0.0)
        self._choose_first_image(now=0.0)
        self.learnt(now=0.0)  # the moves again, now that some servers start on one image

    # -------------------------------------------------------------- estimates

    def estimate(self, slot: ServerSlot, job: PoolJob, loaded: GroupKey | None) -> float:
        """`slot`'s estimate of `job` after `loaded`, remembered: planning asks the same few
        thousand times (jobs and their cached pieces, `PoolJob.split`) for a batch of 20. The
        entry holds the cost model and the job it was made for, so a new model (what the server
        learnt) or another job under a reused id is never answered from it."""
        cost = slot.cost
        key = (id(cost), id(job), loaded)
        hit = self._estimates.get(key)
        if hit is not None and hit[0] is cost and hit[1] is job:
            return hit[2]
        seconds = cost.job_seconds(job, loaded)
        self._estimates[key] = (cost, job, seconds)
        return seconds

    def backlog(self, slot: ServerSlot, now: float, queue: list[PoolJob] | None = None) -> float:
        """Estimated seconds until `slot` has finished its job in flight and its whole queue (or
        `queue` instead of the one it has)."""
        total = max(0.0, slot.running_until - now)
        loaded = slot.loaded
        queue = slot.queue if queue is None else queue
        if queue and self._starts_small(slot, queue[0]):  # it will start on one image
            queue = [*queue[0].split(1), *queue[1:]]
        for job in queue:
            total += self.estimate(slot, job, loaded)
            loaded = group_key(job)
        return total

    def _tail_key(self, slot: ServerSlot) -> GroupKey | None:
        return group_key(slot.queue[-1]) if slot.queue else slot.loaded

    # -------------------------------------------------------------- assignment

    def assign(self, jobs: list[PoolJob], now: float) -> list[PoolJob]:
        """Place jobs group by group, then move single jobs and pieces while that lowers the
        estimated makespan; returns the jobs no server can run. With few groups every way of
        giving each group to a server is tried (each followed by the moves) and the best is
        kept: the greedy order (most constrained, then longest first) can give two groups to the
        fast server and leave a load on the slow one that no single move undoes."""
        groups: dict[GroupKey, list[PoolJob]] = {}
        for job in jobs:
            groups.setdefault(group_key(job), []).append(job)
        # Most constrained groups first (fewest servers can run them), then longest first (LPT).
        order = sorted(groups.values(), key=lambda g: (
            sum(s.can_run(g[0]) for s in self.slots.values()),
            -sum(self.cost.job_seconds(j, None) for j in g),
        ))
        unplaceable: list[PoolJob] = []
        placeable: list[tuple[list[PoolJob], list[ServerSlot]]] = []
        for group in order:
            capable = [s for s in self.slots.values() if s.can_run(group[0])]
            if not capable:
                log.warning("no live server has %s: %d job(s) unplaceable", group[0].spec.checkpoint, len(group))
                unplaceable.extend(group)
            else:
                placeable.append((group, capable))
        plans = math.prod(len(capable) for _, capable in placeable)
        if 1 < plans <= MAX_PLANS:
            plan = min(itertools.product(*(capable for _, capable in placeable)),
                       key=lambda servers: self._trial(placeable, list(servers), now))
            why = f"best of {plans} plans"
        else:
            plan, why = [], "soonest estimated finish"
            queued = {name: len(slot.queue) for name, slot in self.slots.items()}
            for group, capable in placeable:
                plan.append(min(capable, key=lambda s: (self._finish_with(s, group, now), s.loaded != group_key(group[0]),
                                                       s.name)))
                plan[-1].queue.extend(group)  # the next group's finish counts this one
            for name, slot in self.slots.items():  # placed for real (and logged) below
                del slot.queue[queued[name]:]
        for (group, _), slot in zip(placeable, plan):
            loaded = " has it loaded;" if self._tail_key(slot) == group_key(group[0]) else ""
            slot.queue.extend(group)
            log.info("assign %d job(s) of %s to %s (%s;%s backlog %.1fs)",
                     len(group), group[0].spec.checkpoint, slot.name, why, loaded, self.backlog(slot, now))
        while self._move_one_job(now):
            pass
        return unplaceable

    def _trial(self, placeable: list[tuple[list[PoolJob], list[ServerSlot]]], plan: list[ServerSlot],
               now: float) -> tuple[float, float]:
        """The estimated makespan and total busy seconds (fewer loads break ties) of giving each
        group to its server in `plan`, moves included; every queue is as it was afterwards."""
        queues = {name: list(slot.queue) for name, slot in self.slots.items()}
        pieces = dict(self.pieces)
        for (group, _), slot in zip(placeable, plan):
            slot.queue.extend(group)
        while self._move_one_job(now, quiet=True):
            pass
        finish = [self.backlog(slot, now) for slot in self.slots.values()]
        for name, slot in self.slots.items():
            slot.queue = queues[name]
        self.pieces = pieces
        return max(finish), sum(finish)

    def _move_one_job(self, now: float, quiet: bool = False) -> bool:
        """Make the one move off the server that finishes last that most lowers the estimated
        makespan; False if none does. A move is one queued job, the last images of one (as a
        piece of its own), or the last jobs of a checkpoint together. Whole jobs of up to 4
        images are too coarse to balance a fast and a slow server (3 jobs on 2 servers leave one
        idle for a third of the time); a piece costs one more prompt's overhead, and a load on
        the target is paid once for several jobs — both of which the estimate counts."""
        finish = {name: self.backlog(slot, now) for name, slot in self.slots.items()}
        if not finish:
            return False
        source = self.slots[max(finish, key=finish.__getitem__)]
        best: tuple[float, _Move, ServerSlot] | None = None
        for move in _moves(source.queue):
            source_after = self.backlog(source, now, move.rest)
            for target in self.slots.values():
                if target is source or not all(target.can_run(job) for job in move.moved):
                    continue
                target_queue = target.queue
                for job in move.moved:
                    target_queue = _with_job(target_queue, job)
                target_after = self.backlog(target, now, target_queue)
                others = (f for name, f in finish.items() if name not in (source.name, target.name))
                makespan = max(source_after, target_after, *others)
                if makespan < (best[0] if best else finish[source.name]) - _MIN_GAIN:
                    best = (makespan, move, target)
        if best is None:
            return False
        makespan, move, target = best
        source.queue = move.rest
        if move.split is not None:
            self.pieces[move.split] = self.pieces.get(move.split, 1) + 1
        for job in move.moved:
            target.queue = _with_job(target.queue, job)
        if not quiet:
            log.info("move %s (%s) from %s to %s: estimated makespan %.1fs -> %.1fs", move.what,
                     move.moved[0].spec.checkpoint, source.name, target.name, finish[source.name], makespan)
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
        if self._starts_small(slot, job):
            job = self._first_piece(slot, job)
        slot.started = True
        slot.running_estimate = self.estimate(slot, job, slot.loaded)
        slot.running_until = now + slot.running_estimate
        slot.running = (job, slot.loaded)
        slot.loaded = group_key(job)
        return job

    def _choose_first_image(self, now: float) -> None:
        """Each server that could show the batch's first image starts on one image of its first
        job (`_first_piece`), the rest following as one prompt: the first thumbnail then comes
        after a load and one image, not a whole batch, as with round-robin's single-image prompts.
        "Could" is an estimated first image within `FIRST_IMAGE_RACE` of the soonest: estimates
        are rough and the first image is whichever server is first in fact, so servers that are
        close all race (like round-robin, where every server starts on one image); a server far
        behind cannot win it, and starting it small would only pay a prompt's overhead and a
        lost batch speed-up on the makespan."""
        def first_image_at(slot: ServerSlot) -> float:
            first = slot.queue[0]
            head = first.split(1)[0] if _splits_first(first) else first
            return max(0.0, slot.running_until - now) + self.estimate(slot, head, slot.loaded)  # type: ignore[arg-type]

        candidates = {s.name: first_image_at(s) for s in self.slots.values() if not s.started and s.queue}
        if candidates:  # (a server whose first job cannot split, or is one image already, starts as it is)
            soonest = min(candidates.values())
            self.first_image = frozenset(name for name, at in candidates.items() if at <= FIRST_IMAGE_RACE * soonest)
            small = sorted(name for name in self.first_image if _splits_first(self.slots[name].queue[0]))
            log.info("first image: %s start on one image (estimated first image %s)", ", ".join(small) or "no server",
                     ", ".join(f"{name} {at:.1f}s" for name, at in sorted(candidates.items())))

    def _starts_small(self, slot: ServerSlot, job: PoolJob) -> bool:
        return slot.name in self.first_image and not slot.started and _splits_first(job)

    def _first_piece(self, slot: ServerSlot, job: PoolJob) -> PoolJob:
        """One image of `job` now; the rest of it runs right after as one prompt (its learner then
        also sees two job sizes at once, what separates overhead from sampling). Only where the
        pieces make the very same images (`splits_exactly`)."""
        spec = job.spec
        head, rest = job.split(1)
        slot.queue.insert(0, rest)
        self.pieces[job.job_id] = self.pieces.get(job.job_id, 1) + 1
        log.info("%s starts on one image of job %s (%s); its other %d follow as one prompt (first image sooner)",
                 slot.name, job.job_id, spec.checkpoint, rest.spec.batch_size)
        return head

    def piece_ended(self, job: PoolJob) -> bool:
        """One prompt of `job` ended (done or failed); True when it was the job's last piece."""
        left = self.pieces.get(job.job_id, 1) - 1
        if left > 0:
            self.pieces[job.job_id] = left
            return False
        self.pieces.pop(job.job_id, None)
        return True

    def job_done(self, name: str, measured_seconds: float | None = None, now: float | None = None) -> Observation | None:
        """The server finished its job; a measured duration is learnt by its cost model and
        returned as an Observation (the pool keeps the server's learner across batches). With
        `now`, queued jobs then move between servers if the new estimates moved enough
        (`adopt`): the plan was made with what was known before this measurement."""
        slot = self.slots.get(name)
        if slot is None:
            return None
        observation = None
        learner = slot.learner
        if measured_seconds is not None and slot.running is not None:
            observation = Observation.of(*slot.running, measured_seconds)
            learner = learner.observed(observation)
        slot.running_until = slot.running_estimate = 0.0
        slot.running = None
        if now is None:
            slot.learner = learner
            self._estimates.clear()  # the old model's entries can never answer again
        else:
            self.adopt(name, learner, now)
        return observation

    def adopt(self, name: str, learner: CostLearner, now: float) -> bool:
        """Server `name` now estimates with `learner` (measured in this batch or another); the
        queued jobs move between servers (True) only when a term of its cost model moved by more
        than `REPLAN_CHANGE` since the batch last planned (`CostModel.differs`: while none did, no
        job's estimate did either, and the check costs nothing per queued job)."""
        slot = self.slots.get(name)
        if slot is None:
            return False
        slot.learner = learner
        self._estimates.clear()  # the old model's entries can never answer again
        if slot.planned is not None and not slot.planned.differs(learner.model, REPLAN_CHANGE):
            return False
        self.learnt(now)
        return True

    def learnt(self, now: float) -> None:
        """A server's estimates changed: move queued jobs while that lowers the makespan."""
        while self._move_one_job(now):
            pass
        for slot in self.slots.values():
            slot.planned = slot.cost

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
        self._never_starve(thief, victims)

    def _never_starve(self, thief: ServerSlot, victims: list[ServerSlot]) -> None:
        """The estimates say the idle `thief` would finish nothing sooner, yet a server has more
        queued than its next job: take one of them anyway (one its loaded checkpoint fits, else
        the tail). Estimates can be wrong — that is how a server starved on real GPUs — and an
        idle server that never runs a job never gets measured again; the cost is one job."""
        for victim in victims:
            if len(victim.queue) < 2:
                continue
            runnable = [i for i, job in enumerate(victim.queue) if thief.can_run(job)]
            if not runnable:
                continue
            fits = [i for i in runnable if group_key(victim.queue[i]) == thief.loaded]
            job = victim.queue.pop((fits or runnable)[-1])
            thief.queue.append(job)
            log.info("%s takes job %s (%s) from %s (idle while %s has %d more queued; estimates said wait)",
                     thief.name, job.job_id, job.spec.checkpoint, victim.name, victim.name, len(victim.queue))
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


@dataclass(frozen=True)
class _Move:
    """A candidate move off one server: its queue after, the jobs moved, and what it is."""

    rest: list[PoolJob]
    moved: list[PoolJob]
    what: str
    split: str | None = None  # job id split in two by the move


def _moves(queue: list[PoolJob]) -> Iterable[_Move]:
    """Every move `_move_one_job` weighs for a server with this queue."""
    for index, job in enumerate(queue):
        yield _Move(queue[:index] + queue[index + 1:], [job], f"job {job.job_id}")
        if splits_exactly(job.spec):
            for keep in range(1, job.spec.batch_size):
                kept, moved = job.split(keep)
                yield _Move(queue[:index] + [kept] + queue[index + 1:], [moved],
                            f"the last {moved.spec.batch_size} of {job.spec.batch_size} images of job {job.job_id}",
                            job.job_id)
    for key in dict.fromkeys(group_key(job) for job in queue):
        indexes = [i for i, job in enumerate(queue) if group_key(job) == key]
        for count in range(2, len(indexes) + 1):
            taken = set(indexes[-count:])
            yield _Move([job for i, job in enumerate(queue) if i not in taken], [queue[i] for i in sorted(taken)],
                        f"the last {count} jobs of {key[0]}")


def _splits_first(job: PoolJob) -> bool:
    """Whether a server that starts on `job` runs one image of it first (`_first_piece`)."""
    return job.spec.batch_size > 1 and splits_exactly(job.spec)


def _with_job(queue: list[PoolJob], job: PoolJob) -> list[PoolJob]:
    """`queue` with `job` right after the last job of its group (no extra load), else at the end."""
    key = group_key(job)
    last = max((i for i, queued in enumerate(queue) if group_key(queued) == key), default=len(queue) - 1)
    return queue[:last + 1] + [job] + queue[last + 1:]


@dataclass(frozen=True)
class Simulation:
    """Outcome of `simulate`: images and busy seconds per server, the makespan in seconds."""

    images: dict[str, int]
    makespan: float
    unplaceable: tuple[str, ...] = ()
    busy: dict[str, float] = field(default_factory=dict)


# seconds a job really takes on a server, given what was loaded there before it
ActualSeconds = Callable[[str, PoolJob, GroupKey | None], float]


def simulate(jobs: list[PoolJob], servers: list[ServerSlot], cost: CostModel | None = None,
             actual: ActualSeconds | None = None) -> Simulation:
    """Run the scheduler as the pool does, without I/O: each server pulls a job when free, and
    an idle server asks again whenever another's job ends. Without `actual` jobs take what the
    scheduler estimates (the pool's `plan`); with it they take `actual(server, job, loaded)`
    seconds, which each server's learner then learns from, as from a real measurement."""
    scheduler = Scheduler(jobs, servers, cost)
    images = {s.name: 0 for s in servers}
    busy = {s.name: 0.0 for s in servers}
    events: list[tuple[float, str, float | None]] = [(0.0, s.name, None) for s in servers]
    idle: list[str] = []
    makespan = 0.0
    while events:
        now, name, measured = heapq.heappop(events)
        scheduler.job_done(name, measured, now)
        asking, idle = [name] + [other for other in idle if other != name], []
        for server in asking:
            slot = scheduler.slots[server]
            loaded = slot.loaded
            job = scheduler.next_for(server, now)
            if job is None:
                idle.append(server)
                continue
            seconds = slot.running_estimate if actual is None else actual(server, job, loaded)
            images[server] += job.spec.batch_size
            busy[server] += seconds
            makespan = max(makespan, now + seconds)
            heapq.heappush(events, (now + seconds, server, None if actual is None else seconds))
    return Simulation(images, makespan, tuple(j.job_id for j in scheduler.unplaceable), busy)
