"""Deterministic placeholder pictures: what was asked for, written into the image.

A picture depends only on its recipe, never on time or randomness, so the same checkpoint, LoRAs,
prompt, seed, batch index, size and sampler settings always give the same pixels (and, with the
same PNG text chunks, the same bytes). The background colours and stripe pattern come from a hash
of checkpoint + seed + batch index so that a grid of drafts is easy to tell apart at a glance.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

PNG_COMPRESS_LEVEL = 1  # ComfyUI's default is 4; 1 keeps a 512² save at a few ms
PREVIEW_MAX_SIDE = 256
BLOCK = 8  # background detail in pixels
_FONT_LOCK = threading.Lock()


@dataclass(frozen=True)
class SampleRecipe:
    """One sampler pass: everything that decides what its images look like."""

    checkpoint: str
    loras: tuple[tuple[str, float], ...]
    positive: str
    negative: str
    seed: int
    steps: int
    cfg: float
    sampler_name: str
    scheduler: str
    denoise: float


def _digest(*parts: Any) -> bytes:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).digest()


def _palette(recipe: SampleRecipe, batch_index: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Two colours (from checkpoint + seed + index), stripe angle and period."""
    digest = _digest(recipe.checkpoint, recipe.seed, batch_index)
    first = np.frombuffer(digest[0:3], dtype=np.uint8).astype(np.float32)
    second = 255.0 - np.frombuffer(digest[3:6], dtype=np.uint8).astype(np.float32)
    return first, second, digest[6] % 4, 3 + digest[7] % 5


def _background(recipe: SampleRecipe, batch_index: int, width: int, height: int) -> Image.Image:
    """Gradient + stripes, computed on an 8× smaller grid and scaled up (cheap, compresses well)."""
    first, second, angle, period = _palette(recipe, batch_index)
    cells_x, cells_y = -(-width // BLOCK), -(-height // BLOCK)
    ys, xs = np.mgrid[0:cells_y, 0:cells_x].astype(np.float32)
    along = [xs, ys, xs + ys, xs - ys][angle]
    gradient = (xs / max(cells_x - 1, 1) + ys / max(cells_y - 1, 1)) / 2
    stripes = (np.floor(along / period) % 2) * 0.25
    mix = np.clip(gradient * 0.75 + stripes, 0.0, 1.0)[..., None]
    pixels = (first * (1 - mix) + second * mix).astype(np.uint8)
    return Image.fromarray(pixels, "RGB").resize((cells_x * BLOCK, cells_y * BLOCK), Image.Resampling.NEAREST).crop(
        (0, 0, width, height))


@cache
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _caption(recipe: SampleRecipe, batch_index: int, width: int, height: int) -> list[str]:
    loras = ", ".join(f"{name} @ {strength:g}" for name, strength in recipe.loras) or "no LoRA"
    return [
        recipe.checkpoint,
        loras,
        f"seed {recipe.seed} · #{batch_index}",
        f"{width}x{height} · {recipe.steps} steps · cfg {recipe.cfg:g} · {recipe.sampler_name}/{recipe.scheduler}",
        recipe.positive[:80],
    ]


def _write_lines(image: Image.Image, lines: list[str]) -> None:
    """Text on a dark band so it stays readable on any background."""
    size = max(9, min(image.width, image.height) // 28)
    font = _font(size)
    draw = ImageDraw.Draw(image)
    band = size * len(lines) + size // 2 * (len(lines) + 1)
    draw.rectangle((0, 0, image.width, band), fill=(0, 0, 0))
    with _FONT_LOCK:  # a FreeType face is not safe to use from two threads at once
        for row, line in enumerate(lines):
            draw.text((size // 2, size // 2 + row * (size + size // 2)), line, fill=(255, 255, 255), font=font)


def render_sample(recipe: SampleRecipe, batch_index: int, width: int, height: int,
                  prior: Image.Image | None = None) -> Image.Image:
    """The picture a sampler pass produces; an img2img/hires `prior` shows through by 1-denoise."""
    image = _background(recipe, batch_index, width, height)
    if prior is not None:
        image = Image.blend(image, prior.convert("RGB").resize((width, height)), 1.0 - recipe.denoise)
    _write_lines(image, _caption(recipe, batch_index, width, height))
    return image


def blank_latent_image(width: int, height: int) -> Image.Image:
    """What decoding an untouched empty latent gives: flat grey."""
    return Image.new("RGB", (width, height), (128, 128, 128))


def solid_image(width: int, height: int, color: int) -> Image.Image:
    """EmptyImage: one colour given as 0xRRGGBB."""
    return Image.new("RGB", (width, height), ((color >> 16) & 255, (color >> 8) & 255, color & 255))


def png_bytes(image: Image.Image, text_chunks: dict[str, str]) -> bytes:
    """PNG with ComfyUI's text chunks (`prompt`, then one per extra_pnginfo key)."""
    info = PngImagePlugin.PngInfo()
    for key, value in text_chunks.items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info, compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def preview_jpeg(final: Image.Image, progress: float) -> bytes:
    """A live preview: the final picture, small, fading in from grey as sampling progresses."""
    preview = final.copy()
    preview.thumbnail((PREVIEW_MAX_SIDE, PREVIEW_MAX_SIDE))
    preview = Image.blend(Image.new("RGB", preview.size, (128, 128, 128)), preview, max(0.0, min(progress, 1.0)))
    buffer = io.BytesIO()
    preview.save(buffer, format="JPEG", quality=60)
    return buffer.getvalue()


def reencode(data: bytes, preview: str) -> tuple[bytes, str]:
    """`/view?preview=webp;50` style re-encoding: (bytes, content type)."""
    fmt, _, quality = preview.partition(";")
    fmt = fmt if fmt in ("webp", "jpeg") else "webp"
    buffer = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").save(buffer, format=fmt.upper(), quality=int(quality or 90))
    return buffer.getvalue(), f"image/{fmt}"
