"""Running a planned batch on the server pool and recording each image the moment it ends.

Every image of a batch ends `done` (its file on disk, then its row) or `failed` with a reason —
whatever the servers do: die, hang, return fewer or duplicate images, or the consumer stops.
State is written through `BatchState` (store first, then the live board).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from comfy.models import ImageResult, JobFailed, JobProgress, PoolJob, PreviewFrame
from comfy.pool import ServerPool
from draftgrid.batch_planner import PlannedBatch
from draftgrid.batch_state import BatchState
from draftgrid.image_files import ImageFiles
from draftgrid.planning import PlannedImage
from draftgrid.runtime import LoopThread
from learning.models import BatchRecord, ImageRecord, ImageStatus, JobRecord
from learning.store.preference_store import PreferenceStore

log = logging.getLogger(__name__)

INTERRUPTED = "the app stopped before this image finished"
CANCELLED = "cancelled before it finished"


@dataclass(frozen=True)
class BatchTicket:
    """What `POST /api/generate/batch` answers at once."""

    batch_id: str
    total_count: int
    gpu_distribution: dict[str, int]
    checkpoint_distribution: dict[str, int]
    loras: list[dict[str, object]]
    strategy: dict[str, object]
    keywords: list[str]
    parent_image_ids: list[str]

    def as_json(self) -> dict[str, object]:
        return dict(self.__dict__)


def image_record(batch: BatchRecord, p: PlannedImage) -> ImageRecord:
    s = p.settings
    return ImageRecord(
        image_id=p.image_id, batch_id=batch.batch_id, user_id=batch.user_id, checkpoint=p.checkpoint,
        loras=tuple((l.name, l.strength) for l in p.loras), seed=p.seed, batch_index=p.batch_index,
        width=s.width, height=s.height, steps=s.steps, cfg=s.cfg, sampler_name=s.sampler_name,
        scheduler=s.scheduler, parent_image_id=p.parent_image_id, denoise=s.denoise, hires_scale=s.hires_scale,
    )


def job_records(batch_id: str, planned: Iterable[PlannedImage], jobs: Iterable[PoolJob]) -> list[JobRecord]:
    """Each job's prompt as sent, with the images it is to make (stored with the batch, so a
    retry can make them again)."""
    images: dict[str, list[PlannedImage]] = {}
    for p in planned:
        images.setdefault(p.job_id, []).append(p)
    return [JobRecord(job_id=job.job_id, batch_id=batch_id, positive=job.spec.positive, negative=job.spec.negative,
                      loras=tuple((l.name, l.strength) for l in job.spec.loras), batch_size=job.spec.batch_size,
                      first_index=job.spec.first_index,
                      images=tuple((p.image_id, p.retry_of) for p in sorted(images.get(job.job_id, []),
                                                                            key=lambda p: p.batch_index)))
            for job in jobs]


class _JobImages:
    """One job's planned images by batch index: those delivered (each index once) and not yet saved.
    A retry may plan fewer indexes than its job makes (a job that cannot be cut is made whole)."""

    def __init__(self) -> None:
        self.planned: dict[int, PlannedImage] = {}
        self.delivered: set[int] = set()
        self.unsaved: list[tuple[PlannedImage, ImageResult]] = []

    def add(self, event: ImageResult) -> bool:
        """Keep the image; False for an index the job does not plan or already delivered."""
        if event.batch_index not in self.planned or event.batch_index in self.delivered:
            return False
        self.delivered.add(event.batch_index)
        self.unsaved.append((self.planned[event.batch_index], event))
        return True

    @property
    def complete(self) -> bool:
        return len(self.delivered) == len(self.planned)

    def take_unsaved(self) -> list[tuple[PlannedImage, ImageResult]]:
        taken, self.unsaved = self.unsaved, []
        return taken


class BatchRunner:
    """Starts batches on the pool (on the runner's loop) and records what comes back."""

    def __init__(self, store: PreferenceStore, state: BatchState, pool: ServerPool, runner: LoopThread,
                 files: ImageFiles, after_batch: Callable[[], None] | None = None) -> None:
        self._store = store
        self._state = state
        self._pool = pool
        self._runner = runner
        self._files = files
        self._running: set[concurrent.futures.Future[None]] = set()
        self._stopping = False
        self._after_batch = after_batch  # on the loop once a batch ended (the retention policy's cue)

    def start(self, planned: PlannedBatch) -> BatchTicket:
        """Record the batch and its queued images, then let the pool run it; answers at once."""
        plan, rec = planned.plan, planned.rec
        images = [image_record(planned.record, p) for p in plan.images]
        record = replace(planned.record, count=len(images))
        gpu_distribution = self._pool.plan(list(plan.jobs))
        steps = sum(job.spec.steps * (2 if job.spec.hires_scale else 1) for job in plan.jobs)
        self._state.open(record, images, steps, job_records(record.batch_id, plan.images, plan.jobs))
        running = self._runner.submit(self._run(record.batch_id, plan.images, list(plan.jobs)))
        self._running.add(running)
        running.add_done_callback(self._running.discard)
        log.info("Batch %s for %s: %d images, checkpoints %s, servers %s", record.batch_id, record.user_id,
                 len(images), plan.checkpoint_distribution(), gpu_distribution)
        loras = {spec.name: spec.strength for job in plan.jobs for spec in job.spec.loras}
        return BatchTicket(
            batch_id=record.batch_id, total_count=len(images), gpu_distribution=gpu_distribution,
            checkpoint_distribution=plan.checkpoint_distribution(),
            loras=[{"name": n, "strength": s} for n, s in loras.items()],
            strategy={"mode": rec.mode, "recommended": rec.recommended, "confidence": round(rec.confidence, 4),
                      "message": rec.message, "policy": rec.policy, "next_stage": rec.next_stage},
            keywords=list(record.keywords),
            parent_image_ids=[p.parent_image_id for p in plan.images if p.parent_image_id],
        )

    async def _run(self, batch_id: str, planned: Iterable[PlannedImage], jobs: list[PoolJob]) -> None:
        """Drive the pool for one batch, storing each job's images the moment they all arrived.

        A job's images are written to disk one by one and recorded in one transaction, which keeps
        the single database writer free for clicks. A job that fails keeps the images it did
        deliver; only the others fail, with the pool's reason.
        """
        by_job: dict[str, _JobImages] = {}
        for p in planned:
            by_job.setdefault(p.job_id, _JobImages()).planned[p.batch_index] = p
        ended: set[str] = set()
        try:
            async with contextlib.aclosing(self._pool.run(jobs, batch_key=batch_id)) as events:
                async for event in events:
                    job = by_job.get(event.job_id)
                    if job is None:
                        log.warning("Batch %s: event for unknown job %s ignored", batch_id, event.job_id)
                    elif isinstance(event, ImageResult):
                        if not job.add(event):
                            log.warning("Batch %s: image %d of job %s arrived twice or is not planned; dropped",
                                        batch_id, event.batch_index, event.job_id)
                        elif job.complete:
                            ended.update(await self._save(batch_id, job))
                    elif isinstance(event, JobProgress):
                        self._state.images_running(batch_id, [p.image_id for p in job.planned.values()])
                        self._state.step(batch_id)
                    elif isinstance(event, PreviewFrame):
                        self._state.preview(batch_id, event.image)
                    elif isinstance(event, JobFailed):
                        ended.update(await self._save(batch_id, job))  # what it did deliver is kept
                        lost = [p.image_id for p in job.planned.values() if p.image_id not in ended]
                        await asyncio.to_thread(self._state.images_failed, batch_id, lost, event.reason)
                        ended.update(lost)
        except Exception as exc:  # the batch must end cleanly whatever the pool raised
            log.exception("Batch %s stopped: %s", batch_id, exc)
        finally:
            lost = [p.image_id for job in by_job.values() for p in job.planned.values() if p.image_id not in ended]
            if lost:
                reason = INTERRUPTED if self._stopping else CANCELLED
                await asyncio.to_thread(self._state.images_failed, batch_id, lost, reason)
            self._state.finish(batch_id)
            if self._after_batch is not None:
                self._after_batch()

    async def _save(self, batch_id: str, job: _JobImages) -> list[str]:
        """Write the job's arrived images (once) and record them in one store write; their ids."""
        results = job.take_unsaved()
        if not results:
            return []
        await asyncio.to_thread(self._write_images, batch_id, results)
        return [image.image_id for image, _ in results]

    def _write_images(self, batch_id: str, results: list[tuple[PlannedImage, ImageResult]]) -> None:
        """Files first under the app's own ids (the client already refused anything but a sane
        PNG), then one store write, then the board."""
        statuses = [ImageStatus(image.image_id, "done", event.server, str(self._files.save(image.image_id, event.png)),
                                seconds=event.seconds) for image, event in results]
        self._state.images_done(batch_id, statuses)

    def cancel(self, batch_id: str) -> None:
        self._runner.run(self._pool.cancel(batch_id))

    def stop(self, timeout: float) -> None:
        """App shutdown: end every running batch on the servers and wait until each has recorded
        its end (unfinished images failed as interrupted), so none is left half-written."""
        self._stopping = True
        self._runner.run(self._pool.close(), timeout=timeout)
        concurrent.futures.wait(list(self._running), timeout=timeout)

    def recover_interrupted(self) -> int:
        """Images left queued/running by a previous process can never finish: mark them failed."""
        frame = self._store.read_sql("SELECT image_id FROM images WHERE status IN ('queued', 'running')")
        stale = list(frame["image_id"])
        self._store.update_images([ImageStatus(i, "failed", error=INTERRUPTED) for i in stale])
        if stale:
            log.info("Marked %d images of a previous run as failed (%s)", len(stale), INTERRUPTED)
        return len(stale)
