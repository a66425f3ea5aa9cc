"""Several ComfyUI servers (usually one per GPU) behind one object: health, inventories, model
(checkpoint / LoRA) metadata, and batches streamed back image by image.

Each batch gets its own `Scheduler` (comfy/scheduler.py) and one worker task per live server; a
worker takes that server's lock first and only then pulls one job, holding the lock while the
prompt runs, so there is at most one prompt in flight per server even across concurrent batches
(ComfyUI runs one at a time; anything queued there would make cancel and failover harder), and a
job is never taken by a server busy with another batch: it stays queued, where stealing, cancel
and failover see it. A worker with nothing to take sleeps on its batch's wakeup, so whatever
changes a batch's queues wakes that batch: a job ending, a server lost or back, a cancel, and a
re-plan after another batch's job taught a server's costs. A failure is sorted by whose fault it is: the server's (refused, dropped,
hung → mark offline, re-place its jobs), a stale inventory (model missing there → refresh,
re-place elsewhere), or the job's own (validation, execution → JobFailed with the readable
reason, no retry).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

from comfy.client import ComfyClient
from comfy.errors import (
    ComfyConnectionError,
    ComfyDisconnected,
    ComfyError,
    ComfyInterrupted,
    ComfyProtocolError,
    ComfyTimeout,
    ComfyValidationError,
)
from comfy.loop_lag import LoopLagMeter
from comfy.models import (
    ImageResult,
    JobFailed,
    JobProgress,
    PoolEvent,
    PoolJob,
    PreviewFrame,
    ServerInventory,
    ServerStatus,
)
from comfy.protocol import ImageRef, Preview, Progress
from comfy.scheduler import CostLearner, CostModel, Scheduler, ServerSlot, ewma, group_key, simulate
from comfy.pieces import build_piece_workflow

log = logging.getLogger(__name__)

# A protocol error (hostile file names, wrong JSON shapes, oversized images) is the server's fault
# too: mark it, and let a well-behaved server redo the job.
SERVER_FAULTS = (ComfyConnectionError, ComfyDisconnected, ComfyTimeout, ComfyProtocolError)
UPLOAD_SUBFOLDER = "draftgrid"
# ComfyUI model folders whose metadata the pool reads (the inventory's attribute of the same name lists them)
METADATA_FOLDERS = ("checkpoints", "loras", "diffusion_models")
_END = object()
# A busy server (ComfyUI loading a checkpoint, a machine under load) can miss one health check's
# time-out and be fine; a refused connection counts at once, a slow answer only this many times in a
# row. A server that hangs while running a prompt is caught sooner, by the prompt's own time-outs.
HUNG_AFTER_CHECKS = 2
# A health check that timed out while the pool's own loop ran late for at least this share of the
# time-out is not counted against the server: it never had a fair hearing (comfy/loop_lag.py).
LAG_EXCUSES_TIME_OUT = 0.5


@dataclass
class _Member:
    """One server of the pool and what we know about it."""

    client: ComfyClient
    status: ServerStatus
    inventory: ServerInventory | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    learner: CostLearner = field(default_factory=CostLearner)  # its cost terms, from its measured prompts
    loaded: Any = None  # scheduler GroupKey of what we last ran there
    uploads: dict[str, str] = field(default_factory=dict)  # png sha256 -> LoadImage name
    metadata: dict[tuple[str, str], dict[str, str] | None] = field(default_factory=dict)  # (folder, name)
    quarantined_until: float = 0.0  # loop time; a server that sent malformed data sits out until then
    slow_checks: int = 0  # health checks in a row that timed out while it was online
    losses: int = 0  # times it was marked lost: a health check that began before the last one is stale

    @property
    def name(self) -> str:
        return self.status.name

    @property
    def measured(self) -> bool:
        """Its costs come from finished jobs, not the initial guess."""
        return self.learner.measured

    def slot(self, peer: CostLearner | None = None) -> ServerSlot:
        """Scheduler view; an unmeasured server starts from `peer` (see `ServerPool._slots`)."""
        inventory = self.inventory or ServerInventory((), (), (), ())
        learner = self.learner if self.measured or peer is None else CostLearner(prior=peer.model)
        return ServerSlot(self.name, inventory.model_files, frozenset(inventory.loras),
                          loaded=self.loaded, learner=learner)


@dataclass
class _Batch:
    """A running `ServerPool.run` call."""

    key: str
    scheduler: Scheduler
    remaining: int
    events: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    running: dict[str, str] = field(default_factory=dict)  # server -> prompt id in flight
    tasks: list[asyncio.Task[None]] = field(default_factory=list)  # a worker per server, image downloads
    cancelled: bool = False
    failures: dict[str, JobFailed] = field(default_factory=dict)  # job id -> first failure of a split job's pieces
    shown: bool = False  # an image of the batch has been yielded

    def emit(self, event: PoolEvent) -> None:
        self.shown = self.shown or isinstance(event, ImageResult)
        self.events.put_nowait(event)

    def job_ended(self, count: int = 1) -> None:
        self.remaining -= count
        if self.remaining <= 0:
            self.events.put_nowait(_END)

    def wake(self) -> None:
        """Wake idle workers: work was re-placed, a job ended, or the batch was cancelled."""
        self.wakeup.set()
        self.wakeup = asyncio.Event()


class ServerPool:
    """A batch across several ComfyUI servers; see the module docstring for the rules."""

    def __init__(
        self,
        urls: list[str],
        *,
        names: list[str] | None = None,
        health_interval: float = 5.0,
        timeout: float = 30.0,
        connect_timeout: float = 5.0,
        cost: CostModel | None = None,
        quarantine: float = 60.0,
    ) -> None:
        names = names or [f"gpu-{i}" for i in range(len(urls))]
        if len(names) != len(urls) or len(set(names)) != len(names):
            raise ValueError("names must be unique and one per url")
        self.health_interval = health_interval
        self.quarantine = quarantine  # seconds a server that sent malformed data stays out
        self.cost = cost or CostModel()  # the nominal model every server's learner starts from
        self._members = {
            name: _Member(ComfyClient(url, timeout=timeout, connect_timeout=connect_timeout, name=name),
                          ServerStatus(name=name, url=url, online=False), learner=CostLearner(prior=self.cost))
            for name, url in zip(names, urls)
        }
        self._health_timeout = min(timeout, max(health_interval, 1.0))
        self._batches: dict[str, _Batch] = {}
        self._health_task: asyncio.Task[None] | None = None
        self._lag = LoopLagMeter()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """First health check, then keep checking every `health_interval` seconds."""
        self._lag.start()
        await self.refresh()
        self._health_task = asyncio.create_task(self._health_loop(), name="comfy-pool-health")

    async def close(self) -> None:
        if self._health_task is not None:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
        # end every running batch (its consumer sees the stream end) and stop its prompts on the
        # servers: nobody is left to watch them
        await asyncio.gather(*(self.cancel(key) for key in list(self._batches)))
        await asyncio.gather(*(m.client.close() for m in self._members.values()))
        await self._lag.stop()

    async def __aenter__(self) -> ServerPool:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.health_interval)
            await self.refresh()

    # ------------------------------------------------------------------ health and inventory

    async def refresh(self) -> None:
        """Health + inventory of every server; marks offline/online (a recovered server rejoins)."""
        await asyncio.gather(*(self._refresh_member(m) for m in self._members.values()))

    async def _refresh_member(self, member: _Member) -> None:
        client = member.client
        if asyncio.get_running_loop().time() < member.quarantined_until:
            return  # it answers health checks fine; what it sends during work is the problem
        losses = member.losses
        lag_before = self._lag.total
        try:
            async with asyncio.timeout(self._health_timeout):
                stats, queue, inventory = await asyncio.gather(client.system_stats(), client.queue(), client.inventory())
        except (ComfyError, TimeoutError) as exc:
            lagged = self._lag.total - lag_before
            if isinstance(exc, TimeoutError) and lagged >= LAG_EXCUSES_TIME_OUT * self._health_timeout:
                log.warning("%s: health check timed out while this app's own loop ran %.1f s late; "
                            "not counted against the server", member.name, lagged)
                return
            error = exc if isinstance(exc, ComfyError) else ComfyTimeout(f"{member.name}: health check timed out")
            if isinstance(error, ComfyTimeout) and member.status.online and member.slow_checks + 1 < HUNG_AFTER_CHECKS:
                member.slow_checks += 1  # busy (loading a model, a loaded machine), not yet hung
                log.warning("%s: %s (%d of %d in a row before it counts as hung)", member.name, error,
                            member.slow_checks, HUNG_AFTER_CHECKS)
                return
            self._server_lost(member, error)
            return
        if member.losses != losses:
            # its answers came before it died mid-prompt (they raced on this loop): the loss is the
            # newer fact, so it stays offline until a check that starts after it succeeds
            log.info("%s: a health check that began before it was lost is ignored", member.name)
            return
        member.slow_checks = 0
        status = member.status
        if not status.online:
            log.info("%s is online (%s, %d checkpoints)", member.name, stats.device, len(inventory.checkpoints))
        if member.inventory is not None:
            for folder in METADATA_FOLDERS:
                if getattr(member.inventory, folder) != getattr(inventory, folder):
                    log.info("%s: %s list changed; dropping its cached %s metadata", member.name, folder, folder)
                    member.metadata = {key: meta for key, meta in member.metadata.items() if key[0] != folder}
        rejoined = not status.online
        member.inventory = inventory
        status.online, status.last_error = True, None
        status.queue_running, status.queue_pending = len(queue.running), len(queue.pending)
        status.device, status.vram_total, status.vram_free = stats.device, stats.vram_total, stats.vram_free
        status.simulated = bool(stats.raw.get("system", {}).get("simulated", False))
        status.checkpoints = inventory.checkpoints
        if rejoined:
            await self._rejoin(member)

    def _server_lost(self, member: _Member, exc: ComfyError, batch: _Batch | None = None,
                     job: PoolJob | None = None) -> None:
        """Mark a server offline and move its work (and `job`, unfinished in `batch`) elsewhere."""
        now = asyncio.get_running_loop().time()
        if member.status.online:
            log.warning("%s is offline: %s", member.name, exc)
        member.losses += 1
        member.status.online = False
        member.status.last_error = str(exc)
        if isinstance(exc, ComfyProtocolError):
            member.quarantined_until = now + self.quarantine
            log.warning("%s sent malformed data; kept out for %.0f s", member.name, self.quarantine)
        for each in self._batches.values():
            unfinished = [job] if each is batch and job is not None else []
            if member.name in each.scheduler.slots or unfinished:
                orphans = each.scheduler.drop_server(member.name, now, unfinished)
                self._fail(each, orphans, f"no live server can take it ({exc})")
                each.wake()

    async def _rejoin(self, member: _Member) -> None:
        """A server that came back takes part in the batches still running."""
        for batch in self._batches.values():
            if not batch.cancelled and member.name not in batch.scheduler.slots:
                batch.scheduler.add_server(self._slots([member])[0])
                batch.tasks.append(asyncio.create_task(self._worker(batch, member)))
                log.info("%s rejoins running batch %s", member.name, batch.key)

    def statuses(self) -> list[ServerStatus]:
        """Live status of every server (copies, safe to hand out)."""
        return [ServerStatus(**vars(m.status)) for m in self._members.values()]

    def inventories(self) -> dict[str, ServerInventory]:
        """Inventory per online server."""
        return {m.name: m.inventory for m in self._online() if m.inventory is not None}

    def inventory_union(self) -> ServerInventory:
        """Everything any online server offers, each list sorted and without repeats."""
        inventories = list(self.inventories().values())

        def union(attr: str) -> tuple[str, ...]:
            return tuple(sorted({name for inv in inventories for name in getattr(inv, attr)}))

        loaders = sorted({loader for inv in inventories for loader, _ in inv.clip_loaders})
        clip_loaders = tuple((loader, tuple(sorted({t for inv in inventories for t in inv.clip_types(loader) or ()})))
                             for loader in loaders)
        return ServerInventory(union("checkpoints"), union("loras"), union("samplers"), union("schedulers"),
                               union("diffusion_models"), union("weight_dtypes"), union("text_encoders"),
                               union("vaes"), clip_loaders)

    async def model_metadata(self, name: str, folder: str = "loras") -> dict[str, str] | None:
        """Safetensors metadata of a model file (`folder` one of METADATA_FOLDERS) from an
        online server that lists it; None when it has none or no server lists it. Cached per server
        and folder; a change in that server's list of the folder (files added, removed, renamed)
        drops that folder's cache, the others' stay."""
        if folder not in METADATA_FOLDERS:
            raise ValueError(f"unknown model folder {folder!r}; use one of {', '.join(METADATA_FOLDERS)}")
        key = (folder, name)
        for member in self._online():
            if member.inventory is None or name not in getattr(member.inventory, folder):
                continue
            if key not in member.metadata:
                try:
                    member.metadata[key] = await member.client.view_metadata(name, folder)
                except ComfyError as exc:
                    log.warning("%s: metadata of %s/%s unavailable: %s", member.name, folder, name, exc)
                    continue
            return member.metadata[key]
        return None

    def _online(self) -> list[_Member]:
        return [m for m in self._members.values() if m.status.online]

    def _slots(self, members: list[_Member]) -> list[ServerSlot]:
        """Scheduler slots. A server that has not finished a job yet (it joined or died before
        its first) starts from the costs measured on a peer (the one measured most): the
        nominal model against measured peers is off by the whole per-prompt overhead, in either
        direction, until its first job corrects it."""
        measured = [m.learner for m in self._online() if m.measured]
        peer = max(measured, key=lambda l: len(l.plain) + len(l.switching), default=None)
        return [m.slot(peer) for m in members]

    # ------------------------------------------------------------------ batches

    def plan(self, jobs: list[PoolJob]) -> dict[str, int]:
        """Expected images per online server (the `gpu_distribution` the API returns at once)."""
        return simulate(jobs, self._slots(self._online()), self.cost).images

    async def run(self, jobs: list[PoolJob], batch_key: str) -> AsyncGenerator[PoolEvent, None]:
        """Run every job; yields ImageResult per image as soon as its job is done, JobProgress,
        PreviewFrame, and JobFailed for jobs no live server could complete (what a consumer may
        rely on is in comfy/models.py, `PoolEvent`). Ends when every job has ended, or at once
        after `cancel(batch_key)`.

        Consume it as `async with contextlib.aclosing(pool.run(...)) as events: async for event
        in events: ...`. A bare `async for` that raises or breaks leaves the generator to the
        garbage collector, and with it this batch's workers, its running prompts and its key."""
        if batch_key in self._batches:
            raise ValueError(f"batch {batch_key!r} is already running")
        online = self._online()
        batch = _Batch(batch_key, Scheduler(jobs, self._slots(online), self.cost), remaining=len(jobs))
        self._batches[batch_key] = batch
        if not jobs:
            batch.events.put_nowait(_END)
        self._fail(batch, batch.scheduler.unplaceable)
        batch.scheduler.unplaceable = []
        batch.tasks = [asyncio.create_task(self._worker(batch, m), name=f"pool-{batch_key}-{m.name}") for m in online]
        finished = False
        try:
            while (event := await batch.events.get()) is not _END:
                yield event
            finished = True
        finally:
            if not finished and not batch.cancelled:
                await self.cancel(batch_key)
            await self._stop_workers(batch)
            self._batches.pop(batch_key, None)

    async def cancel(self, batch_key: str) -> None:
        """Stop a batch everywhere: queued jobs dropped, running prompts interrupted and deleted.

        The workers stop first: one whose POST /prompt is still on its way would otherwise land
        its prompt after the interrupt, and it would run unwatched."""
        batch = self._batches.get(batch_key)
        if batch is None or batch.cancelled:
            return
        batch.cancelled = True
        batch.scheduler.clear()
        running = dict(batch.running)
        await self._stop_workers(batch)
        log.info("cancel batch %s: interrupting %s", batch_key, sorted(running) or "nothing")
        await asyncio.gather(*(self._stop_prompt(self._members[name], pid) for name, pid in running.items()))
        batch.events.put_nowait(_END)
        batch.wake()

    async def _stop_prompt(self, member: _Member, prompt_id: str) -> None:
        try:
            await member.client.delete_from_queue([prompt_id])
            await member.client.interrupt(prompt_id)
        except ComfyError as exc:
            log.warning("%s: could not interrupt %s: %s", member.name, prompt_id, exc)

    async def _stop_workers(self, batch: _Batch) -> None:
        """Cancel and await the batch's tasks, including any added while earlier ones wound down
        (an image download a worker started just before it saw the cancel)."""
        while running := [task for task in batch.tasks if not task.done()]:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    def _fail(self, batch: _Batch, jobs: list[PoolJob], reason: str | None = None, server: str | None = None) -> None:
        for job in jobs:
            why = reason or _unplaceable_reason(job, any_online=bool(self._online()))
            log.warning("job %s failed: %s", job.job_id, why)
            self._piece_ended(batch, job, JobFailed(job.job_id, why, server))

    def _piece_ended(self, batch: _Batch, job: PoolJob, failure: JobFailed | None = None) -> None:
        """One prompt of a job ended. A job the scheduler split runs as several prompts; it ends
        with its last one, in one JobFailed (the first failure's) if any of them failed, so the
        `PoolEvent` contract holds: exactly one JobFailed per failed job, as its last event."""
        if failure is not None:
            batch.failures.setdefault(job.job_id, failure)
        if not batch.scheduler.piece_ended(job):
            return
        failed = batch.failures.pop(job.job_id, None)
        if failed is not None:
            batch.emit(failed)
        batch.job_ended()

    async def _worker(self, batch: _Batch, member: _Member) -> None:
        loop = asyncio.get_running_loop()
        while not batch.cancelled and member.status.online and batch.remaining > 0:
            wakeup = batch.wakeup  # before the lock: a wake while waiting for it is not lost
            async with member.lock:  # first the lock, then the job: a taken job never waits
                # None too if the batch was cancelled (queues cleared) or the server dropped meanwhile
                job = batch.scheduler.next_for(member.name, loop.time())
                if job is not None:
                    await self._run_job(batch, member, job)
            if job is None:
                await wakeup.wait()
            else:
                batch.wake()

    async def _run_job(self, batch: _Batch, member: _Member, job: PoolJob) -> None:
        """Run `job` on `member`, whose lock the caller holds. Its images are downloaded by a task
        of their own, so the server starts its next prompt while the last one's images are still
        on their way — except until the batch has shown an image."""
        loop = asyncio.get_running_loop()
        prompt_id = str(uuid.uuid4())
        batch.running[member.name] = prompt_id
        started = loop.time()
        log.info("job %s (%s, %d image(s)) -> %s as prompt %s", job.job_id, job.spec.checkpoint,
                 job.spec.batch_size, member.name, prompt_id)
        try:
            refs = await self._execute(batch, member, job, prompt_id)
        except ComfyInterrupted as exc:
            if not batch.cancelled:
                self._fail(batch, [job], f"interrupted on {member.name}: {exc}", member.name)
            return
        except SERVER_FAULTS as exc:
            self._server_lost(member, exc, batch, job)
            return
        except ComfyValidationError as exc:
            if not exc.only_missing_models():
                self._fail(batch, [job], str(exc), member.name)
                return
            log.warning("%s: inventory was stale (%s); refreshing, retrying elsewhere", member.name, exc)
            await self._refresh_member(member)
            orphans = batch.scheduler.forget_models(member.name, exc.missing_models(), loop.time(), [job])
            self._fail(batch, orphans, f"no other live server has it ({member.name}: {exc})")
            return
        except ComfyError as exc:
            self._fail(batch, [job], str(exc), member.name)
            return
        except Exception as exc:  # a bug must fail this job, not leave the batch waiting forever
            log.exception("job %s on %s: unexpected error", job.job_id, member.name)
            self._fail(batch, [job], f"internal error on {member.name}: {exc!r}", member.name)
            return
        finally:
            batch.running.pop(member.name, None)
        seconds = loop.time() - started
        self._record_success(batch, member, job, seconds)
        delivery = self._deliver(batch, member, job, prompt_id, refs, seconds)
        if not batch.shown:
            # the batch's first image is what its user waits for: it comes home before this server
            # gets its next prompt, whose start would compete with the download on the server
            # (a few milliseconds of the server's time, once per server and batch)
            await delivery
            return
        batch.tasks.append(asyncio.create_task(delivery, name=f"pool-{batch.key}-{job.job_id}-images"))

    async def _deliver(self, batch: _Batch, member: _Member, job: PoolJob, prompt_id: str, refs: list[ImageRef],
                       seconds: float) -> None:
        """Download a finished job's images and stream them out; a server lost meanwhile means
        the job runs again elsewhere (its files went with it). Only the first image of each batch
        index in range(batch_size) is fetched and yielded; a job short of some ends in one
        JobFailed after the images it did get (the `PoolEvent` contract in comfy/models.py)."""
        size = job.spec.batch_size
        refs, dropped = _one_per_index(refs, size)
        if dropped:
            log.warning("%s: job %s: dropped %d duplicate or out-of-range image(s) of %d listed (batch of %d)",
                        member.name, job.job_id, dropped, dropped + len(refs), size)
        try:
            images = await member.client.fetch_images(refs)
        except SERVER_FAULTS as exc:
            self._server_lost(member, exc, batch, job)
            return
        except ComfyError as exc:
            self._fail(batch, [job], str(exc), member.name)
            return
        except Exception as exc:  # as in _run_job: never leave the batch waiting on a dead task
            log.exception("images of job %s on %s: unexpected error", job.job_id, member.name)
            self._fail(batch, [job], f"internal error fetching images from {member.name}: {exc!r}", member.name)
            return
        first = job.spec.first_index  # a piece of a split job: its images are these indexes of the job
        for image in images:
            batch.emit(ImageResult(job.job_id, first + image.batch_index, member.name, image.data, image.filename,
                                   prompt_id, seconds))
        if len(images) < size:
            self._fail(batch, [job], f"server {member.name} returned {len(images)} of {size} images", member.name)
        else:
            self._piece_ended(batch, job)

    async def _execute(self, batch: _Batch, member: _Member, job: PoolJob, prompt_id: str) -> list[ImageRef]:
        init_image = await self._upload_refine_source(member, job) if job.spec.refine_from else None
        workflow = build_piece_workflow(job.spec, init_image_name=init_image)

        def progress(p: Progress) -> None:
            batch.emit(JobProgress(job.job_id, member.name, p.value, p.max))

        def preview(p: Preview) -> None:
            batch.emit(PreviewFrame(job.job_id, member.name, p.image, p.mime))

        return await member.client.execute(workflow, progress, preview, prompt_id=prompt_id)

    async def _upload_refine_source(self, member: _Member, job: PoolJob) -> str:
        """Upload the refine source to this server once (content-addressed name)."""
        png = job.spec.refine_from.png  # type: ignore[union-attr]
        digest = hashlib.sha256(png).hexdigest()
        if digest not in member.uploads:
            member.uploads[digest] = await member.client.upload_image(
                png, f"refine_{digest[:24]}.png", subfolder=UPLOAD_SUBFOLDER, overwrite=True)
            log.info("%s: uploaded refine source %s", member.name, member.uploads[digest])
        return member.uploads[digest]

    def _record_success(self, batch: _Batch, member: _Member, job: PoolJob, seconds: float) -> None:
        """The server learns from the job's seconds, in every running batch (one server, one
        truth: a batch started before this job finished plans with it from now on)."""
        now = asyncio.get_running_loop().time()
        observation = batch.scheduler.job_done(member.name, seconds, now)
        if observation is not None:
            member.learner = member.learner.observed(observation)
            for each in self._batches.values():
                if each.scheduler.adopt(member.name, member.learner, now) and each is not batch:
                    # re-planning may have queued work for a server whose worker in that batch
                    # found none and sleeps on its wakeup: it must look again, or the batch
                    # never ends (this batch's own workers are woken when this job returns)
                    each.wake()
            log.info("%s: job %s took %.2fs; learnt %s", member.name, job.job_id, seconds,
                     _describe(member.learner.model))
        member.loaded = group_key(job)
        status = member.status
        status.images_done += job.spec.batch_size
        status.loaded_checkpoint = job.spec.checkpoint
        status.seconds_per_image = ewma(status.seconds_per_image, seconds / max(job.spec.batch_size, 1))


def _describe(cost: CostModel) -> str:
    loads = ", ".join(f"{family} {seconds:.2f}s" for family, seconds in sorted(cost.checkpoint_load.items()))
    return (f"load {loads}; overhead {cost.prompt_overhead:.2f}s/prompt; step {1000 * cost.step_seconds:.1f}ms "
            f"at 512²; batch n costs n**{cost.batch_exponent:.1f}")


def _one_per_index(refs: list[ImageRef], batch_size: int) -> tuple[list[ImageRef], int]:
    """The first ref of each batch index in range(batch_size), in index order, and how many others
    were dropped: a server listing an image twice or past the batch never gets them downloaded."""
    first: dict[int, ImageRef] = {}
    for ref in refs:
        if 0 <= ref.batch_index < batch_size:
            first.setdefault(ref.batch_index, ref)
    return [first[index] for index in sorted(first)], len(refs) - len(first)


def _unplaceable_reason(job: PoolJob, *, any_online: bool) -> str:
    if not any_online:
        return "no ComfyUI server is online"
    loras = f" with LoRAs {', '.join(l.name for l in job.spec.loras)}" if job.spec.loras else ""
    split = job.spec.split
    model = (f"split model {job.spec.checkpoint} ({', '.join(split.files)})" if split is not None
             else f"checkpoint {job.spec.checkpoint}")
    return f"no online server has {model}{loras}"
