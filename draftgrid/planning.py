"""Batch planning: from a recommendation and LoRA choices to image records and pool jobs (pure).

A checkpoint group is cut into balanced chunks of at most `max_batch` images; each chunk is one
ComfyUI prompt (one `PoolJob`) with its own seed, and image *i* of a chunk is batch index *i*.
Chunk *k* of every group gets seed `base_seed + k`, so with a fixed seed the same (seed, batch
index) appears under every checkpoint: a side-by-side comparison of checkpoints on the same noise.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from comfy.models import GenerationSpec, LoraSpec, PoolJob, RefineSource
from families.split import SplitModel

MAX_SEED = 2**53 - 1  # exact in JSON numbers; ComfyUI accepts up to 2**64-1


@dataclass(frozen=True)
class RenderSettings:
    """Sampler settings and size shared by every image of a batch."""

    width: int
    height: int
    steps: int
    cfg: float
    sampler_name: str
    scheduler: str
    denoise: float = 1.0
    hires_scale: float | None = None


@dataclass(frozen=True)
class CheckpointGroup:
    """Images of one checkpoint with one LoRA set and the prompt text that goes with it."""

    checkpoint: str
    count: int
    loras: tuple[LoraSpec, ...]
    positive: str
    cfg: float | None = None  # None: the batch's CFG


@dataclass(frozen=True)
class PlannedImage:
    """One image of the plan, with everything needed to store and reproduce it."""

    image_id: str
    job_id: str
    checkpoint: str
    loras: tuple[LoraSpec, ...]
    seed: int
    batch_index: int
    settings: RenderSettings
    parent_image_id: str | None = None
    retry_of: str | None = None  # the failed image this one makes again (draftgrid.retry_planner)


@dataclass(frozen=True)
class BatchPlan:
    images: tuple[PlannedImage, ...]
    jobs: tuple[PoolJob, ...]

    def checkpoint_distribution(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for image in self.images:
            out[image.checkpoint] = out.get(image.checkpoint, 0) + 1
        return out

    def with_split_models(self, models: Mapping[str, SplitModel]) -> BatchPlan:
        """The plan with each job on a split-file model carrying that model's files (`models`:
        the catalog's, by name); the images keep the model's name as their checkpoint."""
        jobs = tuple(replace(job, spec=replace(job.spec, split=models[job.spec.checkpoint]))
                     if job.spec.checkpoint in models else job for job in self.jobs)
        return replace(self, jobs=jobs)


IdFactory = Callable[[], str]


def new_id() -> str:
    return uuid.uuid4().hex


def chunk_sizes(count: int, max_batch: int) -> list[int]:
    """Balanced chunk sizes: 7 with max 4 → [4, 3], never a lonely 1 beside a 4 when avoidable."""
    if count <= 0:
        return []
    chunks = math.ceil(count / max(1, max_batch))
    base, extra = divmod(count, chunks)
    return [base + (1 if k < extra else 0) for k in range(chunks)]


def generation_spec(settings: RenderSettings, family: str, checkpoint: str, loras: tuple[LoraSpec, ...], positive: str,
                    negative: str, seed: int, batch_size: int, refine_from: RefineSource | None = None,
                    first_index: int = 0) -> GenerationSpec:
    return GenerationSpec(
        checkpoint=checkpoint, positive=positive, negative=negative, seed=seed, width=settings.width,
        height=settings.height, steps=settings.steps, cfg=settings.cfg, sampler_name=settings.sampler_name,
        scheduler=settings.scheduler, batch_size=batch_size, loras=loras, denoise=settings.denoise,
        hires_scale=settings.hires_scale, refine_from=refine_from, family=family, first_index=first_index,
    )


def plan_txt2img(
    groups: Sequence[CheckpointGroup],
    *,
    negative: str,
    settings: RenderSettings,
    base_seed: int,
    family: str,
    max_batch: int = 4,
    make_id: IdFactory = new_id,
    accelerator: tuple[LoraSpec, ...] = (),
) -> BatchPlan:
    """Plan a text-to-image batch: one job per chunk of each checkpoint group. An `accelerator`
    LoRA (fast drafts) goes on every job but not on the images' records: it is infrastructure,
    so the learning never counts it and a refine never inherits it."""
    images: list[PlannedImage] = []
    jobs: list[PoolJob] = []
    for group in groups:
        group_settings = settings if group.cfg is None else replace(settings, cfg=group.cfg)
        for k, size in enumerate(chunk_sizes(group.count, max_batch)):
            seed = (base_seed + k) % (MAX_SEED + 1)
            job_id = make_id()
            spec = generation_spec(group_settings, family, group.checkpoint, (*group.loras, *accelerator),
                                   group.positive, negative, seed, size)
            jobs.append(PoolJob(job_id=job_id, spec=spec))
            images.extend(
                PlannedImage(make_id(), job_id, group.checkpoint, group.loras, seed, i, group_settings)
                for i in range(size)
            )
    return BatchPlan(tuple(images), tuple(jobs))


@dataclass(frozen=True)
class RefineParent:
    """A chosen image to refine: its id, seed and PNG, and the checkpoint it should move to."""

    image_id: str
    seed: int
    png: bytes
    checkpoint: str
    loras: tuple[LoraSpec, ...]
    positive: str


def plan_refine(
    parents: Sequence[RefineParent],
    *,
    negative: str,
    settings: RenderSettings,
    family: str,
    variants: int = 1,
    make_id: IdFactory = new_id,
) -> BatchPlan:
    """Plan a refine batch: per parent one img2img job (same seed) of `variants` images."""
    images: list[PlannedImage] = []
    jobs: list[PoolJob] = []
    for parent in parents:
        job_id = make_id()
        spec = generation_spec(settings, family, parent.checkpoint, parent.loras, parent.positive, negative, parent.seed,
                               variants, refine_from=RefineSource(png=parent.png, denoise=settings.denoise))
        jobs.append(PoolJob(job_id=job_id, spec=spec))
        images.extend(
            PlannedImage(make_id(), job_id, parent.checkpoint, parent.loras, parent.seed, i, settings, parent.image_id)
            for i in range(variants)
        )
    return BatchPlan(tuple(images), tuple(jobs))


def apply_overrides(settings: RenderSettings, **overrides: object) -> RenderSettings:
    """Replace only the overrides the user actually gave (None means keep the tier default)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    return replace(settings, **given) if given else settings
