"""Pure parsing of what a ComfyUI server sends: object_info combos, history entries, binary
preview frames, system stats and queue listings.

Kept apart from the client so every rule about untrusted server data (file names, sizes, missing
fields) is testable without a socket; anything that does not fit raises ComfyProtocolError.
"""

from __future__ import annotations

import io
import json
import struct
from dataclasses import dataclass, field
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

from PIL import Image

from comfy.errors import ComfyExecutionError, ComfyInterrupted, ComfyProtocolError
from comfy.models import ServerInventory

PREVIEW_IMAGE = 1  # binary frame: u32 type, u32 format (1 jpeg, 2 png), image bytes
PREVIEW_IMAGE_WITH_METADATA = 4  # binary frame: u32 type, u32 json length, json, image bytes
_PREVIEW_FORMATS = {1: "image/jpeg", 2: "image/png"}


@dataclass(frozen=True)
class ImageRef:
    """Where a server saved one output image (as in `executed` / history `outputs`)."""

    filename: str
    subfolder: str
    type: str
    node_id: str
    batch_index: int


@dataclass(frozen=True)
class OutputImage(ImageRef):
    """One finished image with its bytes, fetched from /view."""

    data: bytes


@dataclass(frozen=True)
class Preview:
    """A live preview frame; `prompt_id` is known for type-4 frames, else inferred by the client."""

    image: bytes
    mime: str
    prompt_id: str | None = None
    node_id: str | None = None


@dataclass(frozen=True)
class Progress:
    """Sampler step `value` of `max` on node `node` of prompt `prompt_id`."""

    prompt_id: str
    value: int
    max: int
    node: str | None = None


@dataclass(frozen=True)
class SystemStats:
    """The parts of /system_stats the pool shows; `raw` keeps the rest."""

    comfyui_version: str
    device: str
    vram_total: int
    vram_free: int
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class QueueState:
    """Prompt ids running and waiting on a server (from GET /queue)."""

    running: tuple[str, ...]
    pending: tuple[str, ...]


def combo_options(input_spec: Any) -> list[str]:
    """Options of a combo input in either format: legacy `[[...], {...}]` or V3
    `["COMBO", {"options": [...]}]`; anything else has no options."""
    if not isinstance(input_spec, list) or not input_spec:
        return []
    head = input_spec[0]
    if isinstance(head, list):
        return [str(x) for x in head]
    if head == "COMBO" and len(input_spec) > 1 and isinstance(input_spec[1], dict):
        return [str(x) for x in input_spec[1].get("options", [])]
    return []


def node_input_options(object_info: dict[str, Any], node: str, input_name: str) -> list[str]:
    """Combo options of `node.input_name` in an /object_info answer; [] when absent."""
    entry = object_info.get(node)
    inputs = entry.get("input") if isinstance(entry, dict) else None
    for section in ("required", "optional"):
        specs = inputs.get(section) if isinstance(inputs, dict) else None
        spec = specs.get(input_name) if isinstance(specs, dict) else None
        if spec is not None:
            return combo_options(spec)
    return []


CLIP_LOADER_FILES = {"CLIPLoader": "clip_name", "DualCLIPLoader": "clip_name1", "TripleCLIPLoader": "clip_name1"}


def parse_inventory(object_info: dict[str, Any]) -> ServerInventory:
    """Checkpoints, LoRAs, samplers and schedulers, and the split-file loaders' files (diffusion
    models, text encoders, VAEs) and options, from (a subset of) /object_info."""
    loaders = [node for node in CLIP_LOADER_FILES if isinstance(object_info.get(node), dict) and object_info[node]]
    encoders = {name for node in loaders for name in node_input_options(object_info, node, CLIP_LOADER_FILES[node])}
    return ServerInventory(
        checkpoints=tuple(node_input_options(object_info, "CheckpointLoaderSimple", "ckpt_name")),
        loras=tuple(node_input_options(object_info, "LoraLoader", "lora_name")),
        samplers=tuple(node_input_options(object_info, "KSampler", "sampler_name")),
        schedulers=tuple(node_input_options(object_info, "KSampler", "scheduler")),
        diffusion_models=tuple(node_input_options(object_info, "UNETLoader", "unet_name")),
        weight_dtypes=tuple(node_input_options(object_info, "UNETLoader", "weight_dtype")),
        text_encoders=tuple(sorted(encoders)),
        vaes=tuple(node_input_options(object_info, "VAELoader", "vae_name")),
        clip_loaders=tuple((node, tuple(node_input_options(object_info, node, "type"))) for node in loaders),
    )


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def check_png(data: bytes, filename: str, max_pixels: int) -> None:
    """Refuse what SaveImage never sends: not a PNG, a corrupt one, or absurd dimensions.

    Only the header is decoded for the size, so a decompression bomb costs nothing; `verify()`
    then checks the chunks without decoding the pixels.
    """
    if not data.startswith(PNG_SIGNATURE):
        raise ComfyProtocolError(f"image {filename} is not a PNG")
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > max_pixels:
                raise ComfyProtocolError(
                    f"image {filename} is {img.width}×{img.height} pixels, over the {max_pixels} limit")
            img.verify()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ComfyProtocolError(f"image {filename} is a corrupt PNG ({exc})") from exc


def check_file_name(name: str, what: str) -> str:
    """Refuse names a hostile server could use to make us read elsewhere (`..`, absolute paths)."""
    if not isinstance(name, str) or "\x00" in name:
        raise ComfyProtocolError(f"server sent an invalid {what}: {name!r}")
    for path in (PurePosixPath(name), PureWindowsPath(name)):
        if path.is_absolute() or path.anchor or ".." in path.parts:
            raise ComfyProtocolError(f"server sent a hostile {what}: {name!r}")
    return name


def image_refs(node_id: str, output: Any) -> list[ImageRef]:
    """The images of one node's output (`{"images": [{filename, subfolder, type}, ...]}`)."""
    if not isinstance(output, dict):
        raise ComfyProtocolError(f"output of node {node_id} is not an object: {output!r}")
    refs: list[ImageRef] = []
    for index, item in enumerate(output.get("images") or []):
        try:
            filename, subfolder, kind = item["filename"], item.get("subfolder", ""), item.get("type", "output")
        except (TypeError, KeyError):
            raise ComfyProtocolError(f"image entry without filename in node {node_id}: {item!r}") from None
        refs.append(
            ImageRef(
                filename=check_file_name(filename, "file name"),
                subfolder=check_file_name(subfolder, "subfolder"),
                type=check_file_name(kind, "image type"),
                node_id=str(node_id),
                batch_index=index,
            )
        )
    return refs


def history_image_refs(entry: dict[str, Any]) -> list[ImageRef]:
    """All output images of one /history/{id} entry, in node order."""
    outputs = entry.get("outputs") or {}
    return [ref for node_id, output in outputs.items() for ref in image_refs(node_id, output)]


def history_failure(prompt_id: str, entry: dict[str, Any]) -> ComfyExecutionError | ComfyInterrupted | None:
    """The error a finished-but-failed history entry stands for, or None if it succeeded."""
    status = entry.get("status") or {}
    if status.get("status_str") != "error":
        return None
    for kind, data in status.get("messages") or []:
        if kind == "execution_error":
            return execution_error(prompt_id, data)
        if kind == "execution_interrupted":
            return ComfyInterrupted(prompt_id, data.get("node_id"), data.get("node_type"))
    return ComfyExecutionError(prompt_id=prompt_id, node_id=None, node_type=None,
                               exception_message="failed (no error message in history)")


def history_finished(entry: dict[str, Any]) -> bool:
    """True when the history entry describes a prompt that is no longer running."""
    status = entry.get("status") or {}
    return bool(status.get("completed")) or status.get("status_str") in ("success", "error")


def parse_progress(prompt_id: str, data: dict[str, Any]) -> Progress:
    """A `progress` message body; steps that are not whole numbers are a protocol error."""
    try:
        return Progress(prompt_id, int(data.get("value", 0)), int(data.get("max", 0)), data.get("node"))
    except (TypeError, ValueError, OverflowError):
        raise ComfyProtocolError(f"progress message with bad step counts: {str(data)[:200]}") from None


def execution_error(prompt_id: str, data: dict[str, Any]) -> ComfyExecutionError:
    """ComfyExecutionError from an `execution_error` message body."""
    return ComfyExecutionError(
        prompt_id=prompt_id,
        node_id=data.get("node_id"),
        node_type=data.get("node_type"),
        exception_message=str(data.get("exception_message", "unknown error")),
        exception_type=str(data.get("exception_type", "")),
    )


def decode_preview(frame: bytes) -> Preview | None:
    """A binary ws frame as a Preview; None for frame types that are not previews."""
    if len(frame) < 8:
        raise ComfyProtocolError(f"binary frame of {len(frame)} bytes is too short")
    kind, second = struct.unpack(">II", frame[:8])
    if kind == PREVIEW_IMAGE:
        return Preview(image=frame[8:], mime=_PREVIEW_FORMATS.get(second, "image/jpeg"))
    if kind == PREVIEW_IMAGE_WITH_METADATA:
        end = 8 + second
        if end > len(frame):
            raise ComfyProtocolError("preview metadata runs past the end of the frame")
        try:
            meta = json.loads(frame[8:end])
        except ValueError as exc:
            raise ComfyProtocolError(f"preview metadata is not JSON: {exc}") from None
        if not isinstance(meta, dict):
            raise ComfyProtocolError(f"preview metadata is not an object: {str(meta)[:100]}")
        return Preview(
            image=frame[end:],
            mime=str(meta.get("image_type", "image/jpeg")),
            prompt_id=meta["prompt_id"] if isinstance(meta.get("prompt_id"), str) else None,
            node_id=meta.get("node_id"),
        )
    return None


def parse_system_stats(raw: dict[str, Any]) -> SystemStats:
    """Version and first device (name, VRAM) from /system_stats."""
    try:
        system = raw["system"]
        first = (raw.get("devices") or [{}])[0]
        return SystemStats(
            comfyui_version=str(system.get("comfyui_version", "")),
            device=str(first.get("name", "")),
            vram_total=int(first.get("vram_total") or 0),
            vram_free=int(first.get("vram_free") or 0),
            raw=raw,
        )
    except (KeyError, TypeError, IndexError, AttributeError, ValueError, OverflowError):
        # any wrongly shaped part (a list for `system`, a dict for `devices`, "lots" of VRAM)
        raise ComfyProtocolError(f"unexpected /system_stats answer: {str(raw)[:200]}") from None


def parse_queue(raw: dict[str, Any]) -> QueueState:
    """Prompt ids from /queue (each item is `[number, prompt_id, prompt, extra, outputs]`)."""
    try:
        return QueueState(
            running=tuple(str(item[1]) for item in raw["queue_running"]),
            pending=tuple(str(item[1]) for item in raw["queue_pending"]),
        )
    except (KeyError, TypeError, IndexError):
        raise ComfyProtocolError(f"unexpected /queue answer: {str(raw)[:200]}") from None
