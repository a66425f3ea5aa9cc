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
- A split-file model (`spec.split`) loads through UNETLoader, the CLIP loader for its number of
  text encoders (families/split.py) and VAELoader; the rest of the family's graph is the same.
- The hires pass is LatentUpscaleBy (nearest-exact) + a second KSampler with the same seed,
  sampler and scheduler at `HIRES_DENOISE` and `hires_steps(steps)` steps — all derived from the
  stored fields, nothing random.
"""

from __future__ import annotations

import math
from typing import Any

from comfy.models import GenerationSpec
from families.registry import TierSettings, registry
from families.split import clip_loader, split_shape

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
HIRES_DENOISE = 0.5
HIRES_UPSCALE_METHOD = "nearest-exact"
SIZE_STEP = 64


def defaults_for(family: str, tier: str) -> TierSettings:
    """Steps / cfg / sampler / scheduler (and hires scale) for a family and tier, from the registry."""
    return registry().get(family).tier(tier)


def size_for(family: str, aspect_ratio: str, tier: str) -> tuple[int, int]:
    """(width, height) near the tier's pixel area for that aspect ratio, multiples of 64."""
    if aspect_ratio not in ASPECT_RATIOS:
        raise ValueError(f"unknown aspect ratio {aspect_ratio!r}; use one of {', '.join(ASPECT_RATIOS)}")
    side = registry().get(family).side(tier)
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
    model, clip, vae = _load_model(g, spec)
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
    family = registry().get(spec.family)
    if family.clip_skip > 1:
        clip = [g.add("CLIPSetLastLayer", "CLIP Skip", clip=clip, stop_at_clip_layer=-family.clip_skip), 0]
    if family.model_sampling_shift is not None:
        model = [g.add("ModelSamplingSD3", "Model Sampling SD3", model=model, shift=family.model_sampling_shift), 0]
    positive: Link = [g.add("CLIPTextEncode", "Positive", text=spec.positive, clip=clip), 0]
    if family.negative:
        negative: Link = [g.add("CLIPTextEncode", "Negative", text=spec.negative, clip=clip), 0]
    else:  # the family has no use for a negative prompt (flux): a zeroed conditioning
        negative = [g.add("ConditioningZeroOut", "No Negative", conditioning=positive), 0]
    if family.guidance is not None:
        positive = [g.add("FluxGuidance", "Flux Guidance", conditioning=positive, guidance=family.guidance), 0]
    if spec.refine_from is None:
        latent: Link = [
            g.add(family.latent, "Empty Latent Image", width=spec.width, height=spec.height,
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


def _load_model(g: _Graph, spec: GenerationSpec) -> tuple[Link, Link, Link]:
    """MODEL, CLIP and VAE: from the checkpoint, or from a split model's diffusion model
    (UNETLoader), text encoders (the CLIP loader for their count, with the family's type) and VAE."""
    split = spec.split
    if split is None:
        ckpt = g.add("CheckpointLoaderSimple", "Load Checkpoint", ckpt_name=spec.checkpoint)
        return [ckpt, 0], [ckpt, 1], [ckpt, 2]
    unet = g.add("UNETLoader", "Load Diffusion Model", unet_name=split.diffusion, weight_dtype=split.weight_dtype)
    loader, clip_type = clip_loader(split_shape(registry().get(spec.family)), len(split.text_encoders))
    names = ({"clip_name": split.text_encoders[0]} if len(split.text_encoders) == 1
             else {f"clip_name{i}": name for i, name in enumerate(split.text_encoders, 1)})
    encoders = g.add(loader, "Load Text Encoders", **names, **({"type": clip_type} if clip_type else {}))
    vae = g.add("VAELoader", "Load VAE", vae_name=split.vae)
    return [unet, 0], [encoders, 0], [vae, 0]


def _ksampler(
    g: _Graph,
    spec: GenerationSpec,
    model: Link,
    positive: Link,
    negative: Link,
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
        positive=positive,
        negative=negative,
        latent_image=latent,
        seed=spec.seed,
        steps=steps,
        cfg=spec.cfg,
        sampler_name=spec.sampler_name,
        scheduler=spec.scheduler,
        denoise=denoise,
    )
