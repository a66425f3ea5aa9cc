"""The family registry: `assets/families.toml` checked and read into frozen Family records."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

DEFAULT_FAMILIES_PATH = Path(__file__).resolve().parent.parent / "assets" / "families.toml"
TIER_NAMES = ("draft", "standard", "quality")


class FamilyFileError(ValueError):
    """The family file cannot be used; the message names the file and the problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TierSettings(_Strict):
    """What a tier runs with unless the user overrides it."""

    steps: int = Field(ge=1, le=150)
    cfg: float = Field(ge=0.0, le=30.0)
    sampler: str
    scheduler: str
    hires_scale: float | None = Field(default=None, gt=1.0, le=2.0)


class Accelerator(_Strict):
    """A distilled LoRA or checkpoint that drafts in a few steps, with the settings it needs."""

    name: str
    kind: Literal["lora", "checkpoint"]
    name_tokens: tuple[str, ...]  # any of these in the file name or metadata title recognises it
    steps: int = Field(ge=1, le=150)  # unless the name says "<N>step"
    cfg: float = Field(ge=0.0, le=30.0)
    sampler: str
    scheduler: str
    strength: float = Field(default=1.0, ge=0.0, le=2.0)  # LoRAs only


class SplitShape(_Strict):
    """How a split-file model of the family is put together: a diffusion model (UNETLoader), its
    text encoders (CLIPLoader / DualCLIPLoader / TripleCLIPLoader by their count) and a VAE."""

    clip_type: str  # the `type` option of CLIPLoader / DualCLIPLoader (TripleCLIPLoader has none)
    # the encoders it takes, preferred set first; each encoder as a name hint ("clip_l", "t5xxl")
    text_encoders: tuple[Annotated[tuple[str, ...], Field(min_length=1, max_length=3)], ...] = Field(min_length=1)
    vae: tuple[str, ...] = Field(min_length=1)  # name hints of its VAE ("ae" is Flux's)

    def encoder_counts(self) -> tuple[int, ...]:
        """How many text encoders a model of the family may have, in the order of its sets."""
        return tuple(dict.fromkeys(len(encoders) for encoders in self.text_encoders))


class _Sides(_Strict):
    draft: int = Field(ge=64, le=2048)
    standard: int = Field(ge=64, le=2048)
    quality: int = Field(ge=64, le=2048)


class _Tiers(_Strict):
    draft: TierSettings
    standard: TierSettings
    quality: TierSettings


class Family(_Strict):
    """One model family: recognition, graph shape and per-tier defaults (see assets/families.toml)."""

    name: str
    label: str
    variant_of: str | None = None
    architectures: tuple[str, ...] = ()
    base_model_versions: tuple[str, ...] = ()
    name_tokens: tuple[str, ...] = ()
    name_suffixes: tuple[str, ...] = ()
    lora_families: tuple[str, ...]
    latent: Literal["EmptyLatentImage", "EmptySD3LatentImage"] = "EmptyLatentImage"
    clip_skip: int = Field(default=1, ge=1, le=24)
    model_sampling_shift: float | None = Field(default=None, ge=0.0, le=100.0)
    guidance: float | None = Field(default=None, ge=0.0, le=100.0)
    negative: bool = True
    quality_prefix: str = ""
    sides: _Sides
    tiers: _Tiers
    accelerators: tuple[Accelerator, ...] = ()
    split: SplitShape | None = None  # split-file models (a diffusion model + encoders + VAE); None: none

    def tier(self, tier: str) -> TierSettings:
        if tier not in TIER_NAMES:
            raise ValueError(f"unknown tier {tier!r} for family {self.name!r}")
        return getattr(self.tiers, tier)

    def side(self, tier: str) -> int:
        if tier not in TIER_NAMES:
            raise ValueError(f"unknown tier {tier!r} for family {self.name!r}")
        return getattr(self.sides, tier)

    def fits_lora(self, lora_family: str) -> bool:
        """Whether a LoRA trained on `lora_family` applies to this family's checkpoints."""
        return lora_family in self.lora_families


@dataclass(frozen=True)
class Registry:
    """Every family of the file, in file order."""

    families: Mapping[str, Family]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.families)

    def get(self, name: str) -> Family:
        try:
            return self.families[name]
        except KeyError:
            raise ValueError(f"unknown model family {name!r}; known: {', '.join(self.families)}") from None

    def variants_of(self, name: str) -> tuple[Family, ...]:
        return tuple(f for f in self.families.values() if f.variant_of == name)


def parse_registry(data: Mapping[str, object], source: str = "families file") -> Registry:
    """A registry from the TOML's parsed tables; FamilyFileError naming the first problem."""
    families: dict[str, Family] = {}
    for name, raw in data.items():
        if not isinstance(raw, Mapping):
            raise FamilyFileError(f"{source}: {name!r} is not a table")
        try:
            families[name] = Family.model_validate({**raw, "name": name})
        except ValidationError as error:
            problem = error.errors()[0]
            where = ".".join(str(part) for part in problem["loc"])
            raise FamilyFileError(f"{source}: [{name}] {where}: {problem['msg']}") from error
    for family in families.values():
        unknown = [n for n in (family.variant_of, *family.lora_families) if n is not None and n not in families]
        if unknown:
            raise FamilyFileError(f"{source}: [{family.name}] names unknown family {unknown[0]!r}")
    return Registry(families)


def load_registry(path: Path) -> Registry:
    """Read and check a family file."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise FamilyFileError(f"families file {path}: cannot read it ({error.strerror})") from error
    except tomllib.TOMLDecodeError as error:
        raise FamilyFileError(f"families file {path}: not valid TOML: {error}") from error
    return parse_registry(data, f"families file {path}")


@cache
def registry() -> Registry:
    """The bundled registry (`assets/families.toml`), read once."""
    return load_registry(DEFAULT_FAMILIES_PATH)
