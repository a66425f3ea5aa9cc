"""What a model file is: its base-model family and its bare name.

Pools and Auto-LoRA both need to know whether a checkpoint or LoRA is SD1.5 or SDXL, because
ComfyUI applies a LoRA of the wrong base model by silently skipping the keys it cannot map: the
user gets an unexplained image. Metadata (what the trainer wrote into the safetensors header) is
trusted first; the file name is only a hint.

Family labels: "sd15", "sdxl", "sd2", or a lower-case label of another architecture (e.g. "flux",
"sd3"). Anything other than "sd15"/"sdxl" is a known family that fits no pool and no LoRA slot.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import PurePosixPath

SD15 = "sd15"
SDXL = "sdxl"
SD2 = "sd2"

MODEL_EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".sft", ".gguf")

# modelspec.architecture prefixes (the part before "/lora"), most specific first.
_ARCHITECTURE_FAMILIES = (
    ("stable-diffusion-xl", SDXL),
    ("stable-diffusion-v1", SD15),
    ("stable-diffusion-v2", SD2),
    ("stable-diffusion-3", "sd3"),
    ("flux", "flux"),
)
# kohya's ss_base_model_version values, by prefix.
_KOHYA_FAMILIES = (
    ("sdxl", SDXL),
    ("sd_v1", SD15),
    ("sd_1", SD15),
    ("sd_v2", SD2),
    ("sd_2", SD2),
    ("sd3", "sd3"),
    ("flux", "flux"),
)
# Name tokens that say "this is an SDXL-family file" (Pony and Illustrious are SDXL fine-tunes).
_SDXL_NAME_TOKENS = frozenset({"xl", "sdxl", "pony", "ponyxl", "illustrious", "noobai"})
_OTHER_NAME_FAMILIES = {"flux": "flux", "flux1": "flux", "sd3": "sd3", "sd2": SD2, "sd21": SD2}

_CASE_BOUNDARY = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_SEPARATORS = re.compile(r"[\s/\\_.\-]+")


def file_stem(name: str) -> str:
    """`sd15/realisticVisionV60.safetensors` → `realisticVisionV60` (Windows servers use `\\`)."""
    base = PurePosixPath(name.replace("\\", "/")).name
    lowered = base.lower()
    for extension in MODEL_EXTENSIONS:
        if lowered.endswith(extension):
            return base[: -len(extension)]
    return base


def raw_name_tokens(name: str) -> list[str]:
    """Lower-case pieces of a file name: split on folders, `_ - .` and camelCase, no extension."""
    path = name.replace("\\", "/")
    folders, _, _ = path.rpartition("/")
    spaced = _CASE_BOUNDARY.sub(" ", f"{folders} {file_stem(path)}")
    return [piece.lower() for piece in _SEPARATORS.split(spaced) if piece]


def family_from_metadata(metadata: Mapping[str, str] | None) -> str | None:
    """Family from `modelspec.architecture`, else `ss_base_model_version`; None if neither says."""
    if not metadata:
        return None
    architecture = str(metadata.get("modelspec.architecture") or "").strip().lower()
    if architecture:
        base = architecture.split("/", 1)[0]
        return _by_prefix(base, _ARCHITECTURE_FAMILIES) or base
    version = str(metadata.get("ss_base_model_version") or "").strip().lower()
    if version:
        return _by_prefix(version, _KOHYA_FAMILIES) or version
    return None


def family_from_name(name: str) -> str | None:
    """Family a file name hints at (`juggernautXL_v9` → sdxl), None when it hints at none.

    A token ending in "xl" counts (`realvisxlV40`): model authors glue the suffix on.
    """
    for token in raw_name_tokens(name):
        if token in _SDXL_NAME_TOKENS or token.endswith("xl"):
            return SDXL
        if token in _OTHER_NAME_FAMILIES:
            return _OTHER_NAME_FAMILIES[token]
    return None


def checkpoint_family(name: str, metadata: Mapping[str, str] | None = None) -> str:
    """A checkpoint's family: metadata first, then name hints, else sd15.

    Unmarked checkpoint names (`dreamshaper_8`, `realisticVisionV60`) are overwhelmingly SD1.5,
    and a checkpoint without a family could never be offered at all; SDXL authors nearly always
    mark the name. A misdetected checkpoint is fixed in the pools file (`[checkpoint_families]`).
    """
    return family_from_metadata(metadata) or family_from_name(name) or SD15


def _by_prefix(value: str, table: tuple[tuple[str, str], ...]) -> str | None:
    return next((family for prefix, family in table if value.startswith(prefix)), None)
