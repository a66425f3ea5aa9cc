"""Gallery thumbnails, with the app's own selection mark drawn into the picture.

Gradio's gallery highlights only the last clicked item, client-side; the user's real selection
lives on the server, so it is drawn into a copy of the image: a thick frame and a check badge.
Thumbnails are written once per (image, marked) and then served as file paths, because Gradio
re-encodes PIL values on every update.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

THUMB_MAX = 512
SELECT_COLOUR = (34, 197, 94)
REJECT_COLOUR = (120, 120, 120)
STATES = ("none", "selected", "rejected")  # the marks a thumbnail can carry (one file each)
REMOVED_TEXT = "removed to save space"


def _badge_font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow built without FreeType
        return ImageFont.load_default()


def draw_selection(image: Image.Image) -> Image.Image:
    """A copy of `image` with a green frame and a "✓ SELECTED" badge, readable at phone widths."""
    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    w, h = out.size
    border = max(6, w // 40)
    for i in range(border):
        draw.rectangle([i, i, w - 1 - i, h - 1 - i], outline=SELECT_COLOUR)
    badge_h = max(28, h // 9)
    font = _badge_font(int(badge_h * 0.7))
    text = "SELECTED"
    text_w = draw.textlength(text, font=font)
    badge_w = int(text_w + badge_h * 1.6)
    x0, y0 = border + 4, border + 4
    draw.rounded_rectangle([x0, y0, x0 + badge_w, y0 + badge_h], radius=badge_h // 3, fill=SELECT_COLOUR)
    # a check mark drawn as two strokes (fonts may lack the ✓ glyph)
    cx, cy, s = x0 + badge_h * 0.5, y0 + badge_h * 0.5, badge_h * 0.28
    draw.line([(cx - s, cy), (cx - s * 0.3, cy + s * 0.7), (cx + s, cy - s * 0.7)], fill="white",
              width=max(3, badge_h // 8))
    draw.text((x0 + badge_h * 1.1, y0 + badge_h * 0.12), text, fill="white", font=font)
    return out


def draw_rejection(image: Image.Image) -> Image.Image:
    """A dimmed grey copy, so rejected drafts recede without disappearing."""
    grey = image.convert("L").convert("RGB")
    return Image.blend(grey, Image.new("RGB", grey.size, REJECT_COLOUR), 0.45)


def thumbnail_path(cache_dir: Path, stem: str, state: str) -> Path:
    """Where the thumbnail of the image file named `stem` for `state` is cached."""
    return cache_dir / f"{stem}.{state}.png"


def thumbnail(source: Path, cache_dir: Path, state: str) -> Path:
    """Path of the thumbnail of `source` for `state` ("none", "selected", "rejected"); made once."""
    target = thumbnail_path(cache_dir, source.stem, state)
    if target.exists():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with Image.open(source) as img:
        img.thumbnail((THUMB_MAX, THUMB_MAX))
        if state == "selected":
            img = draw_selection(img)
        elif state == "rejected":
            img = draw_rejection(img)
        tmp = target.with_name(f"{target.name}.{uuid.uuid4().hex}.tmp")
        img.save(tmp, format="PNG", compress_level=1)
    tmp.replace(target)  # atomic: a concurrent reader never sees half a file
    return target


def removed_placeholder(target: Path) -> Path:
    """A small grey picture saying the image was removed to save space, written once to `target`."""
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", (256, 256), (200, 200, 200))
    draw = ImageDraw.Draw(img)
    font = _badge_font(18)
    for i, line in enumerate(("removed to", "save space")):
        width = draw.textlength(line, font=font)
        draw.text(((256 - width) / 2, 104 + i * 26), line, fill=(90, 90, 90), font=font)
    tmp = target.with_name(f"{target.name}.{uuid.uuid4().hex}.tmp")
    img.save(tmp, format="PNG")
    tmp.replace(target)
    return target
