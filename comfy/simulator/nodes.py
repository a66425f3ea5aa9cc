"""What each supported node does, on symbolic values instead of tensors.

Models, CLIPs and conditionings are just names and texts; a latent remembers the sampler pass
that made it (and the picture it started from), so VAEDecode can render the picture that pass
"would" have produced. GPU time is charged through the run context (see timemodel.py).

Pillow work runs in worker threads (`asyncio.to_thread`): several simulated GPUs share one event
loop, and one server's rendering must not stall another's progress or HTTP answers.
"""

from __future__ import annotations

import asyncio
import random
import string
from dataclasses import dataclass, field, replace
from typing import Any, Awaitable, Callable, Protocol

from PIL import Image, ImageOps

from comfy.simulator.render import SampleRecipe, blank_latent_image, render_sample, solid_image

LATENT_FACTOR = 8  # a latent cell covers 8×8 pixels


@dataclass(frozen=True)
class ModelRef:
    """MODEL / CLIP / VAE output: the checkpoint plus the LoRAs patched in so far."""

    checkpoint: str
    loras: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Conditioning:
    text: str


@dataclass(frozen=True)
class Latent:
    """A latent batch: its size in pixels, the last sampler pass, and the pictures under it."""

    width: int
    height: int
    batch_size: int
    sample: SampleRecipe | None = None
    prior: tuple[Image.Image, ...] | None = field(default=None, compare=False)
    first_index: int = 0  # batch index of the first picture (ComfyUI's `batch_index` after LatentFromBatch)


@dataclass
class NodeResult:
    outputs: tuple[Any, ...]
    ui: dict[str, Any] | None = None


class RunContext(Protocol):
    """What a node may ask of the run executing it."""

    async def load_model(self, model: ModelRef) -> None: ...
    def prepare(self, latent: Latent, pictures: Callable[[], tuple[Image.Image, ...]]) -> None: ...
    async def sample(self, steps: int, latent: Latent) -> None: ...
    async def decode(self, latent: Latent) -> tuple[Image.Image, ...]: ...
    def check_checkpoint(self, name: str) -> None: ...
    async def save_images(self, images: tuple[Image.Image, ...], folder_type: str,
                          prefix: str) -> list[dict[str, str]]: ...
    def open_input_image(self, name: str) -> Image.Image: ...


def decode_latent(latent: Latent) -> tuple[Image.Image, ...]:
    """The pictures a latent stands for (what VAEDecode shows)."""
    size = (latent.width, latent.height)
    if latent.sample is None:
        if latent.prior is None:
            return tuple(blank_latent_image(*size) for _ in range(latent.batch_size))
        return tuple(image.resize(size) for image in latent.prior)
    priors = latent.prior or (None,) * latent.batch_size
    return tuple(render_sample(latent.sample, latent.first_index + index, *size, prior)
                 for index, prior in enumerate(priors))


def _latent_side(pixels: float) -> int:
    return max(1, round(pixels / LATENT_FACTOR)) * LATENT_FACTOR


async def checkpoint_loader(ctx: RunContext, ckpt_name: str) -> NodeResult:
    ctx.check_checkpoint(ckpt_name)
    model = ModelRef(ckpt_name)
    return NodeResult((model, model, model))


async def lora_loader(ctx: RunContext, model: ModelRef, clip: ModelRef, lora_name: str,
                      strength_model: float, strength_clip: float) -> NodeResult:
    return NodeResult((replace(model, loras=model.loras + ((lora_name, strength_model),)),
                       replace(clip, loras=clip.loras + ((lora_name, strength_clip),))))


async def lora_loader_model_only(ctx: RunContext, model: ModelRef, lora_name: str, strength_model: float) -> NodeResult:
    return NodeResult((replace(model, loras=model.loras + ((lora_name, strength_model),)),))


async def clip_text_encode(ctx: RunContext, text: str, clip: ModelRef) -> NodeResult:
    return NodeResult((Conditioning(text),))


async def clip_text_encode_flux(ctx: RunContext, clip: ModelRef, clip_l: str, t5xxl: str, guidance: float) -> NodeResult:
    return NodeResult((Conditioning(t5xxl or clip_l),))


async def clip_text_encode_sd3(ctx: RunContext, clip: ModelRef, clip_l: str, clip_g: str, t5xxl: str,
                               empty_padding: str) -> NodeResult:
    return NodeResult((Conditioning(t5xxl or clip_g or clip_l),))


async def conditioning_zero_out(ctx: RunContext, conditioning: Conditioning) -> NodeResult:
    """A zeroed conditioning: the sampler sees no negative text."""
    return NodeResult((Conditioning(""),))


_PASSED_THROUGH = ("model", "clip", "conditioning", "samples")


async def passthrough(ctx: RunContext, **inputs: Any) -> NodeResult:
    """Nodes that tune a model, clip or conditioning the symbolic values do not model
    (CLIPSetLastLayer, ModelSampling*, FluxGuidance, SetLatentNoiseMask): the value they tune."""
    return NodeResult((next(inputs[name] for name in _PASSED_THROUGH if name in inputs),))


async def unet_loader(ctx: RunContext, unet_name: str, weight_dtype: str) -> NodeResult:
    ctx.check_checkpoint(unet_name)
    return NodeResult((ModelRef(unet_name),))


async def clip_loader(ctx: RunContext, **inputs: Any) -> NodeResult:
    names = [str(v) for k, v in sorted(inputs.items()) if k.startswith("clip_name")]
    return NodeResult((ModelRef("+".join(names)),))


async def vae_loader(ctx: RunContext, vae_name: str) -> NodeResult:
    return NodeResult((ModelRef(vae_name),))


async def empty_latent_image(ctx: RunContext, width: int, height: int, batch_size: int) -> NodeResult:
    """EmptyLatentImage and EmptySD3LatentImage (16 channels there; the same symbolic latent)."""
    return NodeResult((Latent(width // LATENT_FACTOR * LATENT_FACTOR, height // LATENT_FACTOR * LATENT_FACTOR,
                              batch_size),))


async def ksampler(ctx: RunContext, model: ModelRef, seed: int, steps: int, cfg: float, sampler_name: str,
                   scheduler: str, positive: Conditioning, negative: Conditioning, latent_image: Latent,
                   denoise: float) -> NodeResult:
    recipe = SampleRecipe(model.checkpoint, model.loras, positive.text, negative.text, seed, steps, cfg,
                          sampler_name, scheduler, denoise)
    has_picture = latent_image.sample is not None or latent_image.prior is not None
    prior = await asyncio.to_thread(decode_latent, latent_image) if has_picture and denoise < 1.0 else None
    result = Latent(latent_image.width, latent_image.height, latent_image.batch_size, recipe, prior,
                    latent_image.first_index)
    ctx.prepare(result, lambda: decode_latent(result))  # made while the model loads and the steps run
    await ctx.load_model(model)
    await ctx.sample(steps, result)
    return NodeResult((result,))


async def vae_decode(ctx: RunContext, samples: Latent, vae: ModelRef) -> NodeResult:
    # A GPU has the pixels when its modelled decode is over: the run renders them within that time.
    return NodeResult((await ctx.decode(samples),))


async def vae_encode(ctx: RunContext, pixels: tuple[Image.Image, ...], vae: ModelRef) -> NodeResult:
    first = pixels[0]
    width, height = first.width // LATENT_FACTOR * LATENT_FACTOR, first.height // LATENT_FACTOR * LATENT_FACTOR
    return NodeResult((Latent(width, height, len(pixels), prior=tuple(pixels)),))


async def latent_upscale_by(ctx: RunContext, samples: Latent, upscale_method: str, scale_by: float) -> NodeResult:
    return NodeResult((replace(samples, width=_latent_side(samples.width * scale_by),
                               height=_latent_side(samples.height * scale_by)),))


async def repeat_latent_batch(ctx: RunContext, samples: Latent, amount: int) -> NodeResult:
    """ComfyUI concatenates `amount` copies of the latent tensor: here the pictures under it repeat.

    A sampled latent is decoded first, so every copy stands for the same picture (as copied tensors
    would); the next sampler still gives each batch index its own noise, hence its own picture.
    """
    if samples.sample is None and samples.prior is None:
        return NodeResult((replace(samples, batch_size=samples.batch_size * amount),))
    pictures = await asyncio.to_thread(decode_latent, samples)
    return NodeResult((Latent(samples.width, samples.height, samples.batch_size * amount, prior=pictures * amount),))


async def latent_from_batch(ctx: RunContext, samples: Latent, batch_index: int, length: int) -> NodeResult:
    """ComfyUI's slice of a latent batch, clamped as it clamps; the slice keeps its batch indexes,
    so the next sampler gives each picture the noise it had in the whole batch."""
    batch_index = min(samples.batch_size - 1, batch_index)
    length = min(samples.batch_size - batch_index, length)
    prior = samples.prior[batch_index:batch_index + length] if samples.prior is not None else None
    return NodeResult((replace(samples, batch_size=length, prior=prior, first_index=samples.first_index + batch_index),))


async def image_scale(ctx: RunContext, image: tuple[Image.Image, ...], upscale_method: str, width: int,
                      height: int, crop: str) -> NodeResult:
    resample = Image.Resampling.NEAREST if upscale_method == "nearest-exact" else Image.Resampling.BILINEAR
    return NodeResult((tuple(i.resize((width or i.width, height or i.height), resample) for i in image),))


async def image_scale_by(ctx: RunContext, image: tuple[Image.Image, ...], upscale_method: str,
                         scale_by: float) -> NodeResult:
    resample = Image.Resampling.NEAREST if upscale_method == "nearest-exact" else Image.Resampling.BILINEAR
    return NodeResult((tuple(i.resize((max(1, round(i.width * scale_by)), max(1, round(i.height * scale_by))),
                                      resample) for i in image),))


async def empty_image(ctx: RunContext, width: int, height: int, batch_size: int, color: int) -> NodeResult:
    return NodeResult((tuple(solid_image(width, height, color) for _ in range(batch_size)),))


async def load_image(ctx: RunContext, image: str) -> NodeResult:
    picture = ImageOps.exif_transpose(ctx.open_input_image(image))
    mask = Image.new("L", picture.size, 0)
    return NodeResult(((picture.convert("RGB"),), (mask,)))


async def save_image(ctx: RunContext, images: tuple[Image.Image, ...], filename_prefix: str) -> NodeResult:
    return NodeResult((), {"images": await ctx.save_images(images, "output", filename_prefix)})


async def preview_image(ctx: RunContext, images: tuple[Image.Image, ...]) -> NodeResult:
    suffix = "".join(random.choice(string.ascii_lowercase) for _ in range(5))
    return NodeResult((), {"images": await ctx.save_images(images, "temp", f"ComfyUI_temp_{suffix}")})


NodeFunction = Callable[..., Awaitable[NodeResult]]

NODE_FUNCTIONS: dict[str, NodeFunction] = {
    "CheckpointLoaderSimple": checkpoint_loader,
    "LoraLoader": lora_loader,
    "LoraLoaderModelOnly": lora_loader_model_only,
    "CLIPTextEncode": clip_text_encode,
    "EmptyLatentImage": empty_latent_image,
    "EmptySD3LatentImage": empty_latent_image,
    "CLIPTextEncodeFlux": clip_text_encode_flux,
    "CLIPTextEncodeSD3": clip_text_encode_sd3,
    "ConditioningZeroOut": conditioning_zero_out,
    "CLIPSetLastLayer": passthrough,
    "ModelSamplingSD3": passthrough,
    "ModelSamplingFlux": passthrough,
    "ModelSamplingDiscrete": passthrough,
    "FluxGuidance": passthrough,
    "SetLatentNoiseMask": passthrough,
    "UNETLoader": unet_loader,
    "CLIPLoader": clip_loader,
    "DualCLIPLoader": clip_loader,
    "TripleCLIPLoader": clip_loader,
    "VAELoader": vae_loader,
    "ImageScale": image_scale,
    "KSampler": ksampler,
    "VAEDecode": vae_decode,
    "VAEEncode": vae_encode,
    "LatentUpscaleBy": latent_upscale_by,
    "RepeatLatentBatch": repeat_latent_batch,
    "LatentFromBatch": latent_from_batch,
    "ImageScaleBy": image_scale_by,
    "EmptyImage": empty_image,
    "LoadImage": load_image,
    "SaveImage": save_image,
    "PreviewImage": preview_image,
}
