"""A retry of a batch's failed images: the prompts that were to make them, sent again as a new batch.

The new batch copies the old one's record (prompt, tier, family, mode, ...) and makes one new image
per failed one, with its checkpoint, LoRAs, seed, batch index, size and sampler settings, from the
prompt as it was first sent (`batch_jobs`: the text with trigger words and quality tags, the
negative, the LoRA chain with any fast-draft accelerator). Those are facts in the store, so a retry
works after a restart too. The failed images stay failed in their batch (facts are never rewritten);
each new image records which one it makes again (`job_images.retry_of`).

Same seed, same picture: a job whose images can be made in pieces (`comfy.pieces.splits_exactly`:
txt2img with a deterministic sampler) is sent as one piece per run of consecutive failed batch
indexes. Any other job (an ancestral or LCM sampler, an img2img refine) is sent whole, since its
pictures depend on the whole batch, and only its failed indexes are kept.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace

from comfy.models import LoraSpec, PoolJob, RefineSource
from comfy.pieces import splits_exactly
from draftgrid.batch_planner import PlannedBatch
from draftgrid.batch_state import BatchState
from draftgrid.errors import Gone, InvalidRequest, NotFound
from draftgrid.image_files import ImageFiles
from draftgrid.planning import BatchPlan, IdFactory, PlannedImage, RenderSettings, generation_spec, new_id
from learning.models import BatchRecord, ImageRecord, JobRecord, Recommendation
from learning.store.preference_store import PreferenceStore

log = logging.getLogger(__name__)


def consecutive_runs(indexes: Sequence[int]) -> list[list[int]]:
    """[0, 1, 3] → [[0, 1], [3]] (sorted first)."""
    runs: list[list[int]] = []
    for index in sorted(indexes):
        if runs and index == runs[-1][-1] + 1:
            runs[-1].append(index)
        else:
            runs.append([index])
    return runs


def render_settings_of(image: ImageRecord) -> RenderSettings:
    return RenderSettings(width=image.width, height=image.height, steps=image.steps, cfg=image.cfg,
                          sampler_name=image.sampler_name, scheduler=image.scheduler, denoise=image.denoise,
                          hires_scale=image.hires_scale)


def plan_retry(failed: Sequence[tuple[ImageRecord, JobRecord]], family: str, parent_png: Callable[[str], bytes],
               make_id: IdFactory = new_id) -> BatchPlan:
    """Jobs that make the failed images again, and one new planned image per failed one (pure but
    for `parent_png`, which reads a refine's source image)."""
    by_job: dict[str, tuple[JobRecord, list[ImageRecord]]] = {}
    for image, job in failed:
        by_job.setdefault(job.job_id, (job, []))[1].append(image)
    images: list[PlannedImage] = []
    jobs: list[PoolJob] = []
    for job, lost in by_job.values():
        first = lost[0]
        settings = render_settings_of(first)
        source = (RefineSource(png=parent_png(first.parent_image_id), denoise=first.denoise)
                  if first.parent_image_id else None)
        whole = generation_spec(settings, family, first.checkpoint, tuple(LoraSpec(n, s) for n, s in job.loras),
                                job.positive, job.negative, first.seed, job.batch_size, source, job.first_index)
        by_index = {image.batch_index: image for image in lost}
        if splits_exactly(whole):
            pieces = [replace(whole, first_index=run[0], batch_size=len(run))
                      for run in consecutive_runs(list(by_index))]
        else:
            pieces = [whole]
        for spec in pieces:
            job_id = make_id()
            jobs.append(PoolJob(job_id=job_id, spec=spec))
            for index in range(spec.first_index, spec.first_index + spec.batch_size):
                old = by_index.get(index)
                if old is not None:
                    images.append(PlannedImage(
                        make_id(), job_id, old.checkpoint, tuple(LoraSpec(n, s) for n, s in old.loras), old.seed,
                        index, render_settings_of(old), old.parent_image_id, retry_of=old.image_id))
    return BatchPlan(tuple(images), tuple(jobs))


class RetryPlanner:
    """Turns "retry the failed images of this batch" into a planned batch; writes nothing."""

    def __init__(self, store: PreferenceStore, state: BatchState, files: ImageFiles) -> None:
        self._store = store
        self._state = state
        self._files = files

    def plan(self, user_id: str, batch_id: str) -> PlannedBatch:
        batch = self._store.get_batch(batch_id, user_id)
        if batch is None:
            raise NotFound(f"batch {batch_id!r} not found")
        live = self._state.live(batch_id)
        if live is not None and not live.finished:
            raise InvalidRequest(f"batch {batch_id} is still running; retry its failed images once it has ended")
        failed = self._store.failed_images(batch_id)
        if not failed:
            raise InvalidRequest(f"batch {batch_id} has no failed image to retry")
        known = [(image, job) for image, job in failed if job is not None]
        if len(known) < len(failed):
            raise InvalidRequest(f"batch {batch_id} was made before DraftGrid recorded its prompts as sent, so its "
                                 "failed images cannot be made again exactly; generate it again instead")
        plan = plan_retry(known, batch.family, self._parent_png)
        record = replace(batch, batch_id=new_id(), count=0, created_at=None, reviewed_at=None)
        message = (f"Retrying {len(plan.images)} failed image(s) of batch {batch_id[:6]} with their seeds and "
                   f"settings, {len(plan.jobs)} prompt(s)")
        log.info("Retry for %s: %s", user_id, message)
        return PlannedBatch(record, plan, retry_recommendation(batch, plan, message))

    def _parent_png(self, image_id: str) -> bytes:
        try:
            return self._files.read(image_id)
        except FileNotFoundError:
            raise Gone(f"the refine source {image_id} has no file any more, so its refine cannot be made "
                       "again") from None


def retry_recommendation(batch: BatchRecord, plan: BatchPlan, message: str) -> Recommendation:
    """The old batch's strategy, as the ticket's strategy line, with the retry's message."""
    return Recommendation(mode=batch.strategy, recommended=batch.recommended, confidence=batch.confidence,
                          allocation=plan.checkpoint_distribution(), scores={}, checkpoints_to_test=[],
                          message=message, policy=batch.policy)
