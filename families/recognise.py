"""What a model file is: its family and its bare name.

Pools and Auto-LoRA both need a checkpoint's or LoRA's family, because ComfyUI applies a LoRA of
the wrong base model by silently skipping the keys it cannot map: the user gets an unexplained
image. Metadata (what the trainer wrote into the safetensors header) is trusted first; the file
name is only a hint. Every rule comes from the registry (`assets/families.toml`).

A label the registry does not know (e.g. "hunyuan" from a modelspec.architecture) is kept as it
is: a known-unknown family that fits no pool and no LoRA slot.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import PurePosixPath

from families.registry import Registry, registry

DEFAULT_FAMILY = "sd15"  # unmarked checkpoint names are overwhelmingly SD1.5
MODEL_EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".sft", ".gguf")

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


def family_from_metadata(metadata: Mapping[str, str] | None, families: Registry | None = None) -> str | None:
    """Base family from `modelspec.architecture`, else `ss_base_model_version`; None if neither says."""
    if not metadata:
        return None
    families = families or registry()
    architecture = str(metadata.get("modelspec.architecture") or "").strip().lower()
    if architecture:
        base = architecture.split("/", 1)[0]
        return _by_prefix(base, [(p, f.name) for f in families.families.values() for p in f.architectures]) or base
    version = str(metadata.get("ss_base_model_version") or "").strip().lower()
    if version:
        return _by_prefix(version, [(p, f.name) for f in families.families.values()
                                    for p in f.base_model_versions]) or version
    return None


def family_from_name(name: str, families: Registry | None = None) -> str | None:
    """Family a file name hints at (`juggernautXL_v9` → sdxl, `ponyDiffusionV6XL` → pony), or None.

    A variant's tokens win over its base's (a Pony name also says "xl"); a token ending in a
    family's suffix counts (`realvisxlV40`): model authors glue the suffix on.
    """
    families = families or registry()
    tokens = raw_name_tokens(name)
    variant = _variant_by_tokens(tokens, [f for f in families.families.values() if f.variant_of])
    if variant:
        return variant
    bases = [f for f in families.families.values() if not f.variant_of]
    for token in tokens:
        for family in bases:
            if token in family.name_tokens or any(token.endswith(s) for s in family.name_suffixes):
                return family.name
    return None


def checkpoint_family(name: str, metadata: Mapping[str, str] | None = None, families: Registry | None = None) -> str:
    """A checkpoint's family: metadata first, then name hints, else sd15; a base family's variant
    (pony, illustrious of sdxl) by its name or `modelspec.title`.

    A misdetected checkpoint is fixed in the pools file (`[checkpoint_families]`).
    """
    return model_family(name, metadata, families) or DEFAULT_FAMILY


def model_family(name: str, metadata: Mapping[str, str] | None = None, families: Registry | None = None) -> str | None:
    """A model file's family as `checkpoint_family` finds it, or None when neither its metadata nor
    its name says (a diffusion model of no known family is not guessed)."""
    families = families or registry()
    base = family_from_metadata(metadata, families) or family_from_name(name, families)
    if base is None:
        return None
    if base in families.families and families.get(base).variant_of:
        return base
    title = str((metadata or {}).get("modelspec.title") or "")
    tokens = raw_name_tokens(name) + raw_name_tokens(title)
    return _variant_by_tokens(tokens, list(families.variants_of(base))) or base


def name_has(name: str, hint: str) -> bool:
    """Whether a file name holds a name hint's pieces in a row: "clip_l" is in `clip_l.safetensors`
    and `sd3/clip_l_fp16.safetensors`, "ae" in `ae.safetensors` but not in `sdxl_vae.safetensors`."""
    tokens, wanted = raw_name_tokens(name), raw_name_tokens(hint)
    return any(tokens[i:i + len(wanted)] == wanted for i in range(len(tokens) - len(wanted) + 1))


def lora_fits(checkpoint_family_name: str, lora_family: str, families: Registry | None = None) -> bool:
    """Whether a LoRA of `lora_family` applies to a checkpoint of `checkpoint_family_name`."""
    families = families or registry()
    if checkpoint_family_name not in families.families:
        return checkpoint_family_name == lora_family
    return families.get(checkpoint_family_name).fits_lora(lora_family)


def _variant_by_tokens(tokens: list[str], variants: list) -> str | None:
    return next((v.name for token in tokens for v in variants if token in v.name_tokens), None)


def _by_prefix(value: str, table: list[tuple[str, str]]) -> str | None:
    """Longest matching prefix wins (most specific first)."""
    matches = [(len(prefix), family) for prefix, family in table if value.startswith(prefix)]
    return max(matches)[1] if matches else None
