"""Value types at the boundary of the ComfyUI layer.

Everything `draftgrid/` hands to `comfy/` or gets back from it is one of these frozen dataclasses,
so the pool, the workflow builder and the app agree on one vocabulary. Nothing here knows about
learning, users or the UI.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property

from families.split import SplitModel


@dataclass(frozen=True)
class LoraSpec:
    """One LoraLoader in the chain: file name as ComfyUI lists it, applied to model and clip."""

    name: str
    strength: float


@dataclass(frozen=True)
class RefineSource:
    """An existing image a refine job starts from (img2img and/or hires pass)."""

    png: bytes
    denoise: float = 0.55


@dataclass(frozen=True)
class GenerationSpec:
    """Everything needed to build one ComfyUI prompt; one spec → `batch_size` images.

    Image `i` of the spec is reproducible from (checkpoint, loras, prompts, seed, batch index
    first_index + i, steps, cfg, sampler, scheduler, width, height, denoise, hires_scale).
    """

    checkpoint: str
    positive: str
    negative: str
    seed: int
    width: int
    height: int
    steps: int
    cfg: float
    sampler_name: str = "euler"
    scheduler: str = "normal"
    batch_size: int = 1
    loras: tuple[LoraSpec, ...] = ()
    denoise: float = 1.0
    hires_scale: float | None = None  # latent upscale "hires fix" second pass when set
    refine_from: RefineSource | None = None  # img2img from this image when set
    filename_prefix: str = "draftgrid"
    family: str = "sd15"  # the registry family whose graph shape the workflow builder uses
    # txt2img only: this prompt makes batch indexes first_index .. first_index + batch_size - 1 of
    # the seed's batch (LatentFromBatch), so a job split into pieces makes the very same images
    first_index: int = 0
    # a split-file model loaded instead of a checkpoint; `checkpoint` is then that model's name
    split: SplitModel | None = None

    @property
    def model_files(self) -> tuple[str, ...]:
        """The model files a server must list to run this spec (LoRAs aside)."""
        return self.split.files if self.split is not None else (self.checkpoint,)


@dataclass(frozen=True)
class PoolJob:
    """An atomic unit of work for the pool: one prompt on one server, `spec.batch_size` images.

    `job_id` is the caller's id, echoed on every event about this job.
    """

    job_id: str
    spec: GenerationSpec

    @property
    def family(self) -> str:
        """The spec's family: the time model / scheduler estimate its cost by it."""
        return self.spec.family

    @cached_property
    def group(self) -> tuple[str, tuple[tuple[str, float], ...]]:
        """The checkpoint and the LoRAs with strengths, sorted: jobs of one group run back to back
        without reloading anything (`comfy.costs.group_key`). Cached: planning a batch asks it
        tens of thousands of times, and a job never changes."""
        return self.spec.checkpoint, tuple(sorted((lora.name, lora.strength) for lora in self.spec.loras))

    def split(self, keep: int) -> tuple[PoolJob, PoolJob]:
        """(the first `keep` images of this job, the rest) as two jobs of the same id: pieces that
        make the very same images where `comfy.pieces.splits_exactly` says so. Cached per job:
        planning weighs the same splits thousands of times, and the same piece objects let the
        scheduler reuse their estimates."""
        if not 0 < keep < self.spec.batch_size:
            raise ValueError(f"a job of {self.spec.batch_size} images cannot keep {keep}")
        pieces: dict[int, tuple[PoolJob, PoolJob]] = self.__dict__.setdefault("_pieces", {})
        if keep not in pieces:
            spec = self.spec
            pieces[keep] = (replace(self, spec=replace(spec, batch_size=keep)),
                            replace(self, spec=replace(spec, batch_size=spec.batch_size - keep,
                                                       first_index=spec.first_index + keep)))
        return pieces[keep]


@dataclass(frozen=True)
class ImageResult:
    """One finished image, streamed out of the pool the moment it exists.

    At most one per (job_id, batch_index), and batch_index is in range(spec.batch_size): the pool
    drops an image a server lists twice or past the batch size (one log line per job), so a
    consumer may index its planned images by batch_index without checking.
    """

    job_id: str
    batch_index: int
    server: str
    png: bytes
    filename: str
    prompt_id: str
    seconds: float  # wall time of the job on that server, submit to done


@dataclass(frozen=True)
class JobProgress:
    """Sampler progress of a running job (step `value` of `max`)."""

    job_id: str
    server: str
    value: int
    max: int


@dataclass(frozen=True)
class PreviewFrame:
    """A live preview image a server sent while sampling (binary ws frame type 1 or 4)."""

    job_id: str
    server: str
    image: bytes
    mime: str = "image/jpeg"


@dataclass(frozen=True)
class JobFailed:
    """A job no live server could complete; `reason` is readable by a user.

    Exactly one per failed job, and it is the job's last event. A job can fail after some of its
    images: a server that returned fewer than the batch size (e.g. "server gpu1 returned 3 of 4
    images") gets its ImageResults yielded, then this; the consumer fails only the batch indexes
    it did not receive. A job ends in all its images or in one JobFailed, never in silence.
    """

    job_id: str
    reason: str
    server: str | None = None


# What `ServerPool.run` yields. Per job: any JobProgress / PreviewFrame while it runs, then either
# one ImageResult for every batch index in range(batch_size), or the ImageResults it did get
# (each index at most once) followed by exactly one JobFailed. The stream ends when every job has
# ended (at once on cancel); consume it inside `contextlib.aclosing(pool.run(...))`.
PoolEvent = ImageResult | JobProgress | PreviewFrame | JobFailed


@dataclass(frozen=True)
class ServerInventory:
    """What one server offers, read from /object_info: its loaders' option lists."""

    checkpoints: tuple[str, ...]
    loras: tuple[str, ...]
    samplers: tuple[str, ...]
    schedulers: tuple[str, ...]
    # split-file models: UNETLoader's files and weight dtypes, the CLIP loaders' and VAELoader's files
    diffusion_models: tuple[str, ...] = ()
    weight_dtypes: tuple[str, ...] = ()
    text_encoders: tuple[str, ...] = ()
    vaes: tuple[str, ...] = ()
    # each CLIP loader node the server has, with its `type` options (none for TripleCLIPLoader)
    clip_loaders: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def model_files(self) -> frozenset[str]:
        """Every checkpoint and split-model file it lists (what a spec's `model_files` must be in)."""
        return frozenset((*self.checkpoints, *self.diffusion_models, *self.text_encoders, *self.vaes))

    def clip_types(self, loader: str) -> tuple[str, ...] | None:
        """The `type` options of a CLIP loader node; None when the server lacks the node."""
        return dict(self.clip_loaders).get(loader)


@dataclass
class ServerStatus:
    """Live view of one pool member, for the GPUs panel and `/api/gpus`."""

    name: str
    url: str
    online: bool
    queue_running: int = 0
    queue_pending: int = 0
    device: str = ""
    vram_total: int = 0
    vram_free: int = 0
    loaded_checkpoint: str | None = None
    images_done: int = 0
    seconds_per_image: float | None = None  # measured, for balancing
    last_error: str | None = None
    simulated: bool = False
    checkpoints: tuple[str, ...] = field(default_factory=tuple)
