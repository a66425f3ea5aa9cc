"""Which split-file models the servers can run: the pools file's `[split_models]`, and every other
diffusion model whose family's encoders and VAE the servers have exactly one set of (pure).

A model is offered when some online server lists all its files and has the CLIP loader (with
the family's `type`) and weight dtype it needs; one log line per model says what was decided and
why, so a user can see why a model is missing from the families selector.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial

from rapidfuzz import process

from comfy.models import ServerInventory
from families.registry import registry
from families.split import SplitMismatch, SplitModel, check_encoder_count, clip_loader, find_split_model, split_shape
from learning.pools import PoolConfig, same_checkpoint

log = logging.getLogger(__name__)

CLOSE_MATCH = 80  # rapidfuzz ratio from which a listed file is offered as "did you mean"


@dataclass(frozen=True)
class OfferedSplitModel:
    """A split-file model the servers can run: its family and its files."""

    family: str
    model: SplitModel


Resolve = Callable[[str], SplitModel]  # a candidate's files, given its family (SplitMismatch: none)


def split_models(servers: Mapping[str, ServerInventory], union: ServerInventory, pools: PoolConfig,
                 families: Mapping[str, str | None], checkpoints: Mapping[str, str]) -> dict[str, OfferedSplitModel]:
    """The split-file models to offer, by name: the pools file's (under their table name), then the
    servers' other diffusion models (under their file name). `families` is each diffusion model's
    family as its override, metadata and name tell (None: unknown); `checkpoints` are the servers'.
    One log line per model, offered or not."""
    offered: dict[str, OfferedSplitModel] = {}
    for name, source, family, resolve in _candidates(union, pools, families):
        try:
            if family is None:
                raise SplitMismatch("its family is unknown (no metadata or name hint); set `family` in the pools "
                                    "file's [split_models] or name it in [checkpoint_families]")
            model = resolve(family)
            _check(name, family, model, servers, union, checkpoints)
        except (SplitMismatch, ValueError) as error:  # ValueError: a family the registry does not know
            log.warning("split model %s (%s, %s): not offered: %s", name, source, family or "family unknown", error)
            continue
        log.info("split model %s (%s, %s): offered: %s + %s + %s (%s)", name, source, family, model.diffusion,
                 " + ".join(model.text_encoders), model.vae, model.weight_dtype)
        offered[name] = OfferedSplitModel(family, model)
    return offered


def _candidates(union: ServerInventory, pools: PoolConfig,
                families: Mapping[str, str | None]) -> Iterator[tuple[str, str, str | None, Resolve]]:
    """(name, source, family, resolve) of the pools file's models, then of the diffusion models it
    does not name."""
    for name, configured in pools.split_models.items():
        diffusion = configured.model.diffusion
        family = configured.family or families.get(diffusion) or pools.diffusion_family(diffusion)
        yield name, "pools file", family, lambda _family, model=configured.model: model
    named = {configured.model.diffusion for configured in pools.split_models.values()}
    for diffusion in union.diffusion_models:
        if diffusion not in named:
            yield diffusion, "discovered", families.get(diffusion), partial(_discover, diffusion=diffusion, union=union)


def _discover(family: str, *, diffusion: str, union: ServerInventory) -> SplitModel:
    """The servers' one fitting set of encoders and VAE for a diffusion model of `family`."""
    try:
        return find_split_model(registry().get(family), diffusion, union.text_encoders, union.vaes)
    except SplitMismatch as error:
        raise SplitMismatch(f"{error}; name its files in the pools file's [split_models]") from None


def _check(name: str, family: str, model: SplitModel, servers: Mapping[str, ServerInventory],
           union: ServerInventory, checkpoints: Mapping[str, str]) -> None:
    """SplitMismatch (or ValueError for a family the registry lacks) unless a server can run it."""
    known = registry().get(family)
    check_encoder_count(known, len(model.text_encoders))
    clash = next((c for c in checkpoints if same_checkpoint(name, c)), None)
    if clash is not None:
        raise SplitMismatch(f"its name is the checkpoint {clash}'s too; rename it in the pools file")
    for kind, names, listed in (("diffusion model", (model.diffusion,), union.diffusion_models),
                                ("text encoder", model.text_encoders, union.text_encoders),
                                ("VAE", (model.vae,), union.vaes)):
        for missing in (n for n in names if n not in listed):
            raise SplitMismatch(f"{kind} {missing} is on no online server{_close_match(missing, listed)}")
    loader, clip_type = clip_loader(split_shape(known), len(model.text_encoders))
    having = [server for server, inventory in servers.items() if set(model.files) <= inventory.model_files]
    if not having:
        raise SplitMismatch(f"no online server has all of {', '.join(model.files)}")
    fitting = [server for server in having if _runs(servers[server], loader, clip_type, model.weight_dtype)]
    if not fitting:
        raise SplitMismatch(f"the servers with its files lack {loader}{f' type {clip_type}' if clip_type else ''} "
                            f"or weight dtype {model.weight_dtype}: {', '.join(having)}")


def _runs(inventory: ServerInventory, loader: str, clip_type: str | None, weight_dtype: str) -> bool:
    types = inventory.clip_types(loader)
    return (types is not None and (clip_type is None or clip_type in types)
            and weight_dtype in inventory.weight_dtypes)


def _close_match(name: str, listed: tuple[str, ...]) -> str:
    match = process.extractOne(name, listed, score_cutoff=CLOSE_MATCH) if listed else None
    return f" (did you mean {match[0]}?)" if match else ""
