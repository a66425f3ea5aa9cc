"""Distilled "fast" models: which LoRA or checkpoint is one (Lightning, Hyper-SD, LCM, DMD2,
Turbo, schnell) and the settings a draft with it runs at.

Recognised by name tokens in the file name and in the metadata title / output name; the family
comes from the caller (a LoRA's base model, a checkpoint's family). A "<N>step(s)" piece in the
name sets the steps (`sdxl_lightning_4step_lora` → 4).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from families.recognise import lora_fits, raw_name_tokens
from families.registry import Accelerator, Registry, registry

_STEPS_TOKEN = re.compile(r"^(\d{1,2})steps?$")
_TITLE_KEYS = ("modelspec.title", "ss_output_name")


@dataclass(frozen=True)
class FastSettings:
    """An accelerator found on the servers: the file, and the draft settings it runs at."""

    accelerator: Accelerator
    file: str
    steps: int


def _tokens(name: str, metadata: Mapping[str, str] | None) -> list[str]:
    titles = [str((metadata or {}).get(key) or "") for key in _TITLE_KEYS]
    return raw_name_tokens(name) + [t for title in titles for t in raw_name_tokens(title)]


def recognise(name: str, metadata: Mapping[str, str] | None, family: str | None, kind: str,
              families: Registry | None = None) -> Accelerator | None:
    """The accelerator a `kind` ("lora" / "checkpoint") file of `family` is, or None.

    A LoRA of unknown family is matched against every family's LoRA accelerators (its name says
    what it is); it is only ever applied where its name's family fits.
    """
    families = families or registry()
    tokens = set(_tokens(name, metadata))
    for candidate in families.families.values():
        if family is not None and candidate.name != family:
            continue
        for accelerator in candidate.accelerators:
            if accelerator.kind == kind and tokens & set(accelerator.name_tokens):
                return accelerator
    return None


def steps_for(accelerator: Accelerator, name: str) -> int:
    """The accelerator's steps, or the "<N>step" its file name states."""
    for token in raw_name_tokens(name):
        match = _STEPS_TOKEN.match(token)
        if match and int(match.group(1)) >= 1:
            return int(match.group(1))
    return accelerator.steps


def fast_lora(family: str, loras: Mapping[str, tuple[str | None, Accelerator | None]],
              families: Registry | None = None) -> FastSettings | None:
    """The accelerator LoRA to draft `family` with: among `loras` (name → (base family,
    accelerator)), those whose base fits the family; the registry's order of accelerators decides,
    then the name."""
    families = families or registry()
    if family not in families.families:
        return None
    order = {a.name: i for i, a in enumerate(a for f in families.families.values() for a in f.accelerators)}
    fitting = sorted(
        ((order.get(acc.name, len(order)), name, acc) for name, (base, acc) in loras.items()
         if acc is not None and base is not None and lora_fits(family, base, families)),
        key=lambda item: (item[0], item[1]))
    if not fitting:
        return None
    _, name, accelerator = fitting[0]
    return FastSettings(accelerator, name, steps_for(accelerator, name))


def fast_checkpoints(family: str, checkpoints: list[str], families: Registry | None = None) -> list[FastSettings]:
    """The distilled checkpoints of `family` among `checkpoints` (recognised by name), in order."""
    found = ((name, recognise(name, None, family, "checkpoint", families)) for name in checkpoints)
    return [FastSettings(accelerator, name, steps_for(accelerator, name)) for name, accelerator in found if accelerator]
