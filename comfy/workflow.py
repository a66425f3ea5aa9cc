"""ComfyUI API-format graphs from a GenerationSpec, and the per-tier defaults behind them.

Pure functions only: the same spec always yields the same graph, which is what makes every image
reproducible from the fields stored with it. Node ids are allocated in a fixed order so that a
one-LoRA txt2img graph is node-for-node the graph captured from a real server
(tests/fixtures/comfy/workflow_txt2img_lora.json).

Choices worth knowing:
- img2img with `batch_size > 1` encodes the source once and repeats the latent
  (RepeatLatentBatch); the sampler's batch noise then differs per index, so image i of the job is
  still reproducible from (seed, batch index).
- img2img denoise is `refine_from.denoise` (the spec's own `denoise` applies to txt2img).
- The hires pass is LatentUpscaleBy (nearest-exact) + a second KSampler with the same seed,
  sampler and scheduler at `HIRES_DENOISE` and `hires_steps(steps)` steps — all derived from the
  stored fields, nothing random.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from comfy.models import GenerationSpec

Link = list[Any]  # ["node_id", output_index], ComfyUI's link format

ASPECT_RATIOS: dict[str, tuple[int, int]] = {
    "1:1": (1, 1),
    "4:3": (4, 3),
    "3:4": (3, 4),
    "16:9": (16, 9),
    "9:16": (9, 16),
    "3:2": (3, 2),
    "2:3": (2, 3),
}
# Side of the square whose area each tier targets; sd15 was trained at 512², sdxl at 1024².
BASE_SIDE: dict[str, dict[str, int]] = {
    "sd15": {"draft": 512, "standard": 576, "quality": 640},
    "sdxl": {"draft": 896, "standard": 1024, "quality": 1024},
}
HIRES_DENOISE = 0.5
HIRES_UPSCALE_METHOD = "nearest-exact"
SIZE_STEP = 64


@dataclass(frozen=True)
class SamplerDefaults:
    """What a tier runs with unless the user overrides it."""

    steps: int
    cfg: float
    sampler_name: str
    scheduler: str
    hires_scale: float | None = None


_DEFAULTS: dict[tuple[str, str], SamplerDefaults] = {
    ("sd15", "draft"): SamplerDefaults(12, 7.0, "euler_ancestral", "normal"),
    ("sd15", "standard"): SamplerDefaults(25, 7.0, "dpmpp_2m", "karras"),
    ("sd15", "quality"): SamplerDefaults(35, 7.0, "dpmpp_2m", "karras", hires_scale=1.5),
    ("sdxl", "draft"): SamplerDefaults(12, 6.0, "euler_ancestral", "normal"),
    ("sdxl", "standard"): SamplerDefaults(25, 6.0, "dpmpp_2m", "karras"),
    ("sdxl", "quality"): SamplerDefaults(35, 6.0, "dpmpp_2m", "karras", hires_scale=1.25),
}


def defaults_for(family: str, tier: str) -> SamplerDefaults:
    """Steps / cfg / sampler / scheduler (and hires scale) for a family and tier."""
    try:
        return _DEFAULTS[(family, tier)]
    except KeyError:
        raise ValueError(f"unknown family/tier {family!r}/{tier!r}") from None


def size_for(family: str, aspect_ratio: str, tier: str) -> tuple[int, int]:
    """(width, height) near the tier's pixel area for that aspect ratio, multiples of 64."""
    if aspect_ratio not in ASPECT_RATIOS:
        raise ValueError(f"unknown aspect ratio {aspect_ratio!r}; use one of {', '.join(ASPECT_RATIOS)}")
    try:
        side = BASE_SIDE[family][tier]
    except KeyError:
        raise ValueError(f"unknown family/tier {family!r}/{tier!r}") from None
    rw, rh = ASPECT_RATIOS[aspect_ratio]
    width = side * math.sqrt(rw / rh)
    height = side * math.sqrt(rh / rw)
    return _round_to_step(width), _round_to_step(height)


def _round_to_step(value: float) -> int:
    return max(SIZE_STEP, int(round(value / SIZE_STEP)) * SIZE_STEP)


def hires_steps(steps: int) -> int:
    """Steps of the hires second pass: half the first pass, at least one."""
    return max(1, round(steps / 2))


def output_size(spec: GenerationSpec) -> tuple[int, int]:
    """Pixel size of the saved images (after the hires upscale, which works on 1/8 latents)."""
    if not spec.hires_scale:
        return spec.width, spec.height
    return (
        round(spec.width // 8 * spec.hires_scale) * 8,
        round(spec.height // 8 * spec.hires_scale) * 8,
    )


class _Graph:
    """Allocates node ids "1", "2", ... in insertion order and returns output links."""

    def __init__(self) -> None:
        self.nodes: dict[str, dict[str, Any]] = {}

    def add(self, class_type: str, title: str, **inputs: Any) -> str:
        node_id = str(len(self.nodes) + 1)
        self.nodes[node_id] = {"class_type": class_type, "inputs": inputs, "_meta": {"title": title}}
        return node_id


def build_workflow(spec: GenerationSpec, *, init_image_name: str | None = None) -> dict[str, Any]:
    """The API-format prompt for one spec (`spec.batch_size` images).

    With `spec.refine_from` set, `init_image_name` must be the name the server returned from the
    upload (LoadImage input); prompts are plain string values and can never add nodes.
    """
    if spec.refine_from is not None and not init_image_name:
        raise ValueError("a refine spec needs init_image_name (upload refine_from.png first)")
    g = _Graph()
    ckpt = g.add("CheckpointLoaderSimple", "Load Checkpoint", ckpt_name=spec.checkpoint)
    model: Link = [ckpt, 0]
    clip: Link = [ckpt, 1]
    vae: Link = [ckpt, 2]
    for lora in spec.loras:
        node = g.add(
            "LoraLoader",
            "Load LoRA",
            model=model,
            clip=clip,
            lora_name=lora.name,
            strength_model=lora.strength,
            strength_clip=lora.strength,
        )
        model, clip = [node, 0], [node, 1]
    positive = g.add("CLIPTextEncode", "Positive", text=spec.positive, clip=clip)
    negative = g.add("CLIPTextEncode", "Negative", text=spec.negative, clip=clip)
    if spec.refine_from is None:
        latent: Link = [
            g.add("EmptyLatentImage", "Empty Latent Image", width=spec.width, height=spec.height,
                  batch_size=spec.batch_size),
            0,
        ]
        denoise = spec.denoise
    else:
        image = g.add("LoadImage", "Load Image", image=init_image_name)
        latent = [g.add("VAEEncode", "VAE Encode", pixels=[image, 0], vae=vae), 0]
        if spec.batch_size > 1:
            latent = [g.add("RepeatLatentBatch", "Repeat Latent Batch", samples=latent,
                            amount=spec.batch_size), 0]
        denoise = spec.refine_from.denoise
    sampled = _ksampler(g, spec, model, positive, negative, latent, spec.steps, denoise)
    if spec.hires_scale:
        upscaled = g.add("LatentUpscaleBy", "Hires Upscale", samples=[sampled, 0],
                         upscale_method=HIRES_UPSCALE_METHOD, scale_by=spec.hires_scale)
        sampled = _ksampler(g, spec, model, positive, negative, [upscaled, 0],
                            hires_steps(spec.steps), HIRES_DENOISE, title="Hires KSampler")
    decoded = g.add("VAEDecode", "VAE Decode", samples=[sampled, 0], vae=vae)
    g.add("SaveImage", "Save Image", images=[decoded, 0], filename_prefix=spec.filename_prefix)
    return g.nodes


def _ksampler(
    g: _Graph,
    spec: GenerationSpec,
    model: Link,
    positive: str,
    negative: str,
    latent: Link,
    steps: int,
    denoise: float,
    *,
    title: str = "KSampler",
) -> str:
    return g.add(
        "KSampler",
        title,
        model=model,
        positive=[positive, 0],
        negative=[negative, 0],
        latent_image=latent,
        seed=spec.seed,
        steps=steps,
        cfg=spec.cfg,
        sampler_name=spec.sampler_name,
        scheduler=spec.scheduler,
        denoise=denoise,
    )
