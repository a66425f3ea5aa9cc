"""Split-file models: a diffusion model (UNETLoader) with its text encoders and VAE.

Which of the servers' encoder and VAE files go with a family's diffusion model (the family's
`split` table of assets/families.toml: name hints per encoder, per VAE), how many encoders a
family takes, and the CLIP loader node (and its `type`) that loads them. Pure: the caller passes
the file names the servers list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from families.recognise import name_has
from families.registry import Family, SplitShape

CLIP_LOADERS = {1: "CLIPLoader", 2: "DualCLIPLoader", 3: "TripleCLIPLoader"}  # by encoder count
UNTYPED_LOADERS = ("TripleCLIPLoader",)  # ComfyUI 0.3.64's TripleCLIPLoader has no `type` input


class SplitMismatch(ValueError):
    """The files on the servers do not make one model of the family; the message says why."""


@dataclass(frozen=True)
class SplitModel:
    """A split-file model: a diffusion model (UNETLoader) with its text encoders (in loader order)
    and VAE, file names as ComfyUI lists them."""

    diffusion: str
    text_encoders: tuple[str, ...]
    vae: str
    weight_dtype: str = "default"  # UNETLoader's option

    @property
    def files(self) -> tuple[str, ...]:
        """Every file a server must list to run it."""
        return (self.diffusion, *self.text_encoders, self.vae)


def clip_loader(shape: SplitShape, count: int) -> tuple[str, str | None]:
    """The CLIP loader node for `count` text encoders of a family, and its `type` option (None:
    the node has no `type` input)."""
    loader = CLIP_LOADERS[count]
    return loader, None if loader in UNTYPED_LOADERS else shape.clip_type


def split_shape(family: Family) -> SplitShape:
    """The family's split-file shape; SplitMismatch when it has none."""
    if family.split is None:
        raise SplitMismatch(f"the {family.name} family has no split-file models (no `split` in its "
                            "assets/families.toml table)")
    return family.split


def check_encoder_count(family: Family, count: int) -> None:
    """SplitMismatch unless a model of `family` may have `count` text encoders."""
    counts = split_shape(family).encoder_counts()
    if count not in counts:
        allowed = " or ".join(str(c) for c in counts)
        raise SplitMismatch(f"a {family.name} model takes {allowed} text encoder(s), not {count}")


def find_split_model(family: Family, diffusion: str, text_encoders: Sequence[str], vaes: Sequence[str]) -> SplitModel:
    """A diffusion model of `family` with the one set of encoders and VAE among the servers' files
    that fits the family: its first encoder set whose every hint some file matches, each hint by
    exactly one file, and exactly one VAE. SplitMismatch naming the missing or competing files
    otherwise."""
    shape = split_shape(family)
    for hints in shape.text_encoders:
        found = [sorted(name for name in text_encoders if name_has(name, hint)) for hint in hints]
        if all(found):
            break
    else:
        wanted = " or ".join(" + ".join(hints) for hints in shape.text_encoders)
        raise SplitMismatch(f"the servers have no {wanted} text encoders")
    competing = [f"{hint} ({', '.join(names)})" for hint, names in zip(hints, found) if len(names) > 1]
    if competing:
        raise SplitMismatch(f"several text encoders fit: {'; '.join(competing)}")
    fitting = sorted(name for name in vaes if any(name_has(name, hint) for hint in shape.vae))
    if len(fitting) != 1:
        what = f"several VAEs fit ({', '.join(fitting)})" if fitting else (
            f"the servers have no VAE named like {' or '.join(shape.vae)}")
        raise SplitMismatch(what)
    return SplitModel(diffusion, tuple(names[0] for names in found), fitting[0])
