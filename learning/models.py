"""Value types at the boundary of the learning layer.

`draftgrid/` builds these from requests and hands them to `learning/`; `learning/` returns these.
No HTTP, no Gradio, no ComfyUI types here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from families.registry import Accelerator

ArmKind = Literal["checkpoint", "lora", "lora-combination", "cfg", "negative-term"]  # learning.arms.ARM_KINDS
Tier = Literal["draft", "standard", "quality"]
RuleKind = Literal["lora-veto", "negative-dismissal"]  # a user's rule (learning.store.rules)
FeedbackAction = Literal["select", "unselect", "reject", "reject_all", "viewed", "favourite", "unfavourite"]

DEFAULT_USER = "local"


@dataclass(frozen=True)
class Keyword:
    """A prompt keyword: `stem` keys the statistics, `display` is what a person reads."""

    stem: str
    display: str


@dataclass(frozen=True)
class ExplicitLora:
    """A `<lora:name:0.8>` tag from the prompt: the user's own choice, honoured as is."""

    name: str
    strength: float


@dataclass(frozen=True)
class ParsedPrompt:
    """A prompt split into what learning needs (keywords) and what ComfyUI gets (clean text)."""

    text: str  # prompt with <lora:...> tags removed, weight syntax kept, for CLIPTextEncode
    keywords: tuple[Keyword, ...]
    explicit_loras: tuple[ExplicitLora, ...] = ()


@dataclass(frozen=True)
class ArmStat:
    """Evidence for one (keyword, arm): possibly decayed counts, so floats."""

    shown: float
    selected: float
    rejected: float = 0.0


@dataclass(frozen=True)
class Recommendation:
    """A checkpoint plan for one batch and why.

    `allocation` maps checkpoint → image count (sums to the requested count, order = priority,
    recommended first); `mode` is "single", "recommended_backup", "explore" or "quick".
    """

    mode: str
    recommended: str
    confidence: float
    allocation: dict[str, int]
    scores: dict[str, float]
    checkpoints_to_test: list[str]
    message: str  # the one-line decision, e.g. "Low confidence (0.15), exploring 3 checkpoints: [...]"
    policy: str = "adaptive"
    next_stage: str = ""  # what it would take to reach the next stage ("" when there is none)
    # the evidence behind it: keyword → checkpoint → {"selected", "shown"} (decayed counts)
    evidence: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    # the crowd prior it used, the same shape (pseudo-counts; empty: none; learning.recommend.crowd)
    crowd_prior: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    # the learnt LoRA set and CFG with their evidence (draftgrid.learnt_settings; empty: none)
    settings: dict = field(default_factory=dict)


@dataclass(frozen=True)
class LoraInfo:
    """A LoRA as discovered from ComfyUI: file name plus what its safetensors metadata says."""

    name: str
    base_model: str | None  # a registry family ("sd15", "sdxl", ...), or None when unknown
    tags: tuple[str, ...] = ()
    trigger_words: tuple[str, ...] = ()
    title: str | None = None
    tag_shares: tuple[float, ...] = ()  # per tag, its share of all tag counts (same order as tags)
    accelerator: Accelerator | None = None  # a distilled "fast" LoRA: infrastructure, never a preference


@dataclass(frozen=True)
class LoraChoice:
    """A LoRA chosen for a group of images, with why."""

    name: str
    strength: float
    relevance: float
    trigger_word: str | None = None
    flagged: bool = False  # unknown base (name match only), or an explicit LoRA with a problem
    explicit: bool = False  # came from a <lora:...> tag in the prompt
    reason: str | None = None  # why a choice is flagged, readable by a user


@dataclass(frozen=True)
class BatchRecord:
    """A batch as stored in `batches` (facts, append-only)."""

    batch_id: str
    user_id: str
    session_id: str
    prompt: str
    negative_prompt: str
    keywords: tuple[str, ...]  # stems
    tier: Tier
    family: str
    explore_mode: bool
    auto_lora: bool
    strategy: str
    recommended: str
    confidence: float
    count: int
    policy: str = "adaptive"
    parent_batch_id: str | None = None
    created_at: datetime | None = None
    reviewed_at: datetime | None = None  # set by the store when the batch first counts
    cfg_explicit: bool = False  # the user set the CFG in Advanced: never learnt against


@dataclass(frozen=True)
class ImageStatus:
    """One lifecycle step of an image (queued → running → done | failed), as the store records it."""

    image_id: str
    status: str
    server: str | None = None
    path: str | None = None
    error: str | None = None
    seconds: float | None = None


@dataclass(frozen=True)
class ImageRecord:
    """An image as stored in `images`: enough to reproduce it exactly."""

    image_id: str
    batch_id: str
    user_id: str
    checkpoint: str
    loras: tuple[tuple[str, float], ...]
    seed: int
    batch_index: int
    width: int
    height: int
    steps: int
    cfg: float
    sampler_name: str
    scheduler: str
    status: str = "queued"  # queued / running / done / failed
    server: str | None = None
    path: str | None = None
    error: str | None = None
    seconds: float | None = None
    parent_image_id: str | None = None
    denoise: float = 1.0
    hires_scale: float | None = None
    pruned_at: datetime | None = None  # when the retention policy removed the file (the row stays)


@dataclass(frozen=True)
class FeedbackResult:
    """What a feedback call changed: the selection after it and whether the batch is now reviewed."""

    batch_id: str
    selected: frozenset[str]
    rejected: frozenset[str]
    reviewed: bool
    changed: bool
    favourites: frozenset[str] = frozenset()  # the batch's favourites after it (issue 13)


@dataclass(frozen=True)
class ResetResult:
    """A reset of what was learnt for `keyword` (None: everything), or its undo.

    `reset_id` is None when there was nothing to reset (nothing recorded); `rows` is how many
    aggregate rows the reset removed or the undo brought back; `changed` is false for a repeat
    (an undo of an undone reset, a reset of nothing)."""

    reset_id: int | None
    keyword: str | None
    rows: int
    undone: bool
    changed: bool


@dataclass(frozen=True)
class ResetRecord:
    """One of a user's resets, as listed."""

    reset_id: int
    keyword: str | None
    created_at: datetime
    undone_at: datetime | None


@dataclass(frozen=True)
class JobRecord:
    """One ComfyUI prompt of a batch as it was sent, stored so its images can be made again (a retry
    of failed images, even after a restart). What each image adds (checkpoint, seed, batch index,
    sampler settings, size, refine parent) is on its `ImageRecord`.

    `loras` is the whole chain sent, an accelerator included (the images' records leave it out);
    the prompt made batch indexes `first_index` .. `first_index + batch_size - 1` of its seed's
    batch. `images` are (image id, the failed image it makes again or None), in batch-index order."""

    job_id: str
    batch_id: str
    positive: str
    negative: str
    loras: tuple[tuple[str, float], ...]
    batch_size: int
    first_index: int
    images: tuple[tuple[str, str | None], ...]
