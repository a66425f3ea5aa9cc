"""Checkpoint pools per family and tier, from a TOML file users edit, meet what servers have.

The file (default `assets/pools.toml`) has four tables: `[pools]` ("sd15_draft" → checkpoint
names, best first), `[refine]` (where "Refine selected" goes from a family and tier),
`[checkpoint_families]` (the user's word for checkpoints whose family metadata and name cannot
tell) and `[split_models]` (split-file models by name: a diffusion model, its text encoders and
VAE). Pools only list checkpoints; steps and sizes per tier belong to the workflow builder.
"""

from __future__ import annotations

import logging
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal, cast, get_args

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from families.recognise import checkpoint_family, file_stem, model_family
from families.registry import registry
from families.split import SplitMismatch, SplitModel, check_encoder_count
from learning.models import Tier

log = logging.getLogger(__name__)

DEFAULT_POOLS_PATH = Path(__file__).resolve().parent.parent / "assets" / "pools.toml"
TIERS: tuple[Tier, ...] = get_args(Tier)
FAMILIES = registry().names

_POOL_KEY = rf"^({'|'.join(FAMILIES)})_({'|'.join(TIERS)})$"
PoolKey = Annotated[str, StringConstraints(pattern=_POOL_KEY)]
FileName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class PoolConfigError(ValueError):
    """The pools file cannot be used; the message names the file and the line or key."""


class _SplitModelEntry(BaseModel):
    """`[split_models."<name>"]`: a diffusion model with its text encoders and VAE."""

    model_config = ConfigDict(extra="forbid")

    diffusion: FileName
    text_encoders: list[FileName] = Field(min_length=1, max_length=3)
    vae: FileName
    family: Literal[FAMILIES] | None = None  # type: ignore[valid-type]
    weight_dtype: FileName = "default"


class _PoolFile(BaseModel):
    """The file's schema: typos in keys or families are errors, not silently ignored pools."""

    model_config = ConfigDict(extra="forbid")

    pools: dict[PoolKey, list[str]] = {}
    refine: dict[PoolKey, PoolKey] = {}
    checkpoint_families: dict[str, Literal[FAMILIES]] = {}  # type: ignore[valid-type]
    split_models: dict[FileName, _SplitModelEntry] = {}


@dataclass(frozen=True)
class ConfiguredSplitModel:
    """A split-file model the pools file names: its files, and its family when the file says."""

    model: SplitModel
    family: str | None  # None: from the diffusion model's metadata or name, as for a checkpoint


def pool_key(family: str, tier: str) -> str:
    return f"{family}_{tier}"


def _split_key(key: str) -> tuple[str, Tier]:
    family, tier = key.rsplit("_", 1)
    return family, cast(Tier, tier)


def same_checkpoint(entry: str, name: str) -> bool:
    """A pool entry names a server's checkpoint exactly or by bare name (any folder, extension)."""
    return entry == name or file_stem(entry).lower() == file_stem(name).lower()


@dataclass(frozen=True)
class PoolConfig:
    """Pools, refine mapping and family overrides as read from the pools file."""

    pools: Mapping[str, tuple[str, ...]]
    refine: Mapping[str, str]
    checkpoint_families: Mapping[str, str]  # bare lower-case checkpoint name → family
    split_models: Mapping[str, ConfiguredSplitModel] = field(default_factory=dict)  # model name → its files

    def family_of(self, checkpoint: str, metadata: Mapping[str, str] | None = None) -> str:
        """A checkpoint's family: the file's override, else metadata, else the name."""
        return self.diffusion_family(checkpoint, metadata) or checkpoint_family(checkpoint, metadata)

    def diffusion_family(self, name: str, metadata: Mapping[str, str] | None = None) -> str | None:
        """A diffusion model's family: the file's override (`[checkpoint_families]`), else metadata,
        else the name; None when none of them says (it is not guessed, unlike a checkpoint's)."""
        return self.checkpoint_families.get(file_stem(name).lower()) or model_family(name, metadata)

    def pool_for(self, family: str, tier: str, available: Mapping[str, str]) -> list[str]:
        """The pool's checkpoints the servers have (`available`: name → family), pool order.

        An entry whose available file is of another family is skipped: a pool mistake must not
        put SD1.5 LoRAs on an SDXL checkpoint. Nothing left → every available checkpoint of the
        family (sorted); none of those either → [] and the app reports it.
        """
        key = pool_key(family, tier)
        chosen: list[str] = []
        for entry in self.pools.get(key, ()):
            for name in sorted(available, key=lambda candidate: (candidate != entry, candidate)):
                if not same_checkpoint(entry, name) or name in chosen:
                    continue
                if available[name] != family:
                    log.warning("pool %s: %s is %s, not %s; skipped", key, name, available[name],
                                family)
                    continue
                chosen.append(name)
        if chosen:
            log.info("pool %s: %s", key, chosen)
            return chosen
        fallback = sorted(name for name, found in available.items() if found == family)
        log.info("pool %s: none of its checkpoints available; falling back to all %s: %s",
                 key, family, fallback)
        return fallback

    def refine_target(self, family: str, tier: str) -> tuple[str, Tier] | None:
        """Where a refine of (family, tier) goes: the file's `[refine]` mapping, else the next tier
        of the same family; None from the highest tier unless the file maps it somewhere."""
        mapped = self.refine.get(pool_key(family, tier))
        if mapped:
            return _split_key(mapped)
        index = TIERS.index(cast(Tier, tier)) if tier in TIERS else len(TIERS) - 1
        return (family, TIERS[index + 1]) if index + 1 < len(TIERS) else None


def load_pools(path: Path | None = None) -> PoolConfig:
    """Read and check a pools file (default `assets/pools.toml`); PoolConfigError if unusable."""
    path = path or DEFAULT_POOLS_PATH
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise PoolConfigError(f"pools file {path}: cannot read it ({error.strerror})") from error
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise PoolConfigError(f"pools file {path}: not valid TOML: {error}") from error
    try:
        parsed = _PoolFile.model_validate(data)
    except ValidationError as error:
        raise PoolConfigError(f"pools file {path}: {_describe(error, text)}") from error
    config = PoolConfig(
        pools={key: tuple(entries) for key, entries in parsed.pools.items()},
        refine=dict(parsed.refine),
        checkpoint_families={
            file_stem(name).lower(): family for name, family in parsed.checkpoint_families.items()
        },
        split_models={name: _split_model(name, entry, path, text) for name, entry in parsed.split_models.items()},
    )
    log.info("pools from %s: %s", path, sorted(config.pools))
    return config


def _split_model(name: str, entry: _SplitModelEntry, path: Path, text: str) -> ConfiguredSplitModel:
    """A checked `[split_models]` entry: a family (stated, or told by the diffusion model's name)
    with split-file models, and a count of text encoders that family takes."""
    family = entry.family or model_family(entry.diffusion)
    if family is not None:
        try:
            check_encoder_count(registry().get(family), len(entry.text_encoders))
        except SplitMismatch as error:
            line = _line_of(["split_models", name], text)
            raise PoolConfigError(f"pools file {path}: {f'line {line}, ' if line else ''}[split_models] {name}: "
                                  f"{error}") from error
    model = SplitModel(entry.diffusion, tuple(entry.text_encoders), entry.vae, entry.weight_dtype)
    return ConfiguredSplitModel(model, entry.family)


def _describe(error: ValidationError, text: str) -> str:
    """First problem as 'line N, [table] key: message' (pydantic knows keys, not lines); a missing
    key's line is its table's."""
    problem = error.errors()[0]
    location = [str(part) for part in problem["loc"] if part != "[key]"]
    where = f"[{location[0]}] {' '.join(location[1:])}".strip() if location else "file"
    present = location[:-1] if problem["type"] == "missing" else location
    line = _line_of(present, text)
    prefix = f"line {line}, " if line else ""
    return f"{prefix}{where}: {problem['msg']}"


def _line_of(keys: list[str], text: str) -> int | None:
    """The line of a key path (table, then key within it, ...): each key is looked for from the
    line of the one before, so a key that several tables have is found in its own; a key not
    written as such (e.g. the table part of `[split_models."x"]`) is passed over."""
    lines = text.splitlines()
    found: int | None = None
    for key in (k for k in keys if not k.isdigit()):
        pattern = re.compile(rf"^\s*(?:\[\s*(?:\w+\s*\.\s*)?)?[\"']?{re.escape(key)}[\"']?\s*(?:=|\])")
        start = found or 1
        found = next((number for number, line in enumerate(lines[start - 1:], start) if pattern.match(line)), found)
    return found
