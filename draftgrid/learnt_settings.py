"""The learnt LoRA set, CFG and negative terms for a prompt: evidence read from the store, decided by learning.

Reads the `lora-combination` and `cfg` evidence of the prompt's keywords and the user's LoRA
vetoes, and builds the `CellOptions` the cell planner fills a batch from, with the best choice of
each and why (the strategy line, `GET /api/recommendation`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from draftgrid.cell_planner import CellOptions
from learning.arms import negative_terms
from learning.models import LoraChoice
from learning.recommend import combinations as combos
from learning.recommend.combinations import ArmChoice
from learning.recommend.negatives import NegativeSuggestion, suggest_negatives
from learning.recommend.posterior import Posterior, prior_rate
from learning.store.aggregates_memory import sum_stats
from learning.store.preference_store import PreferenceStore


@dataclass(frozen=True)
class LearntSettings:
    """The options for a batch and the recommendation among them."""

    options: CellOptions
    lora_set: ArmChoice
    cfg: ArmChoice | None  # None: the user set the CFG

    def summary(self) -> str:
        cfg = "CFG: the user's" if self.cfg is None else self.cfg.reason
        return f"LoRA set: {self.lora_set.reason}; {cfg}"

    def as_json(self) -> dict:
        return {
            "lora_set": {"arm": self.lora_set.best, "expected_rate": round(self.lora_set.expected, 4),
                         "evidence_images": round(self.lora_set.images, 2), "reason": self.lora_set.reason},
            "cfg": None if self.cfg is None else {
                "arm": self.cfg.best, "expected_rate": round(self.cfg.expected, 4),
                "evidence_images": round(self.cfg.images, 2), "reason": self.cfg.reason},
        }


def vetoed_loras(store: PreferenceStore, user_id: str, stems: Sequence[str]) -> frozenset[str]:
    """The LoRAs the user vetoed for any of these keywords."""
    wanted = set(stems)
    return frozenset(lora for keyword, lora in store.rules(user_id, "lora-veto") if keyword in wanted)


def learnt_settings(store: PreferenceStore, user_id: str, stems: Sequence[str], family: str,
                    choices: Sequence[LoraChoice], pool: Sequence[str], recommended: str, default_cfg: float,
                    cfg_explicit: bool) -> LearntSettings:
    """Candidate LoRA sets (explicit tags kept in all, vetoed LoRAs out) and CFGs with their
    posteriors; the best of each (the CFG at the `recommended` checkpoint)."""
    explicit = tuple(c for c in choices if c.explicit)
    automatic = {c.name: c for c in choices if not c.explicit}
    today = [(c.name, round(c.strength, 2)) for c in automatic.values()]
    weak = frozenset(c.name for c in automatic.values() if not c.central)
    sets = combos.candidate_sets(today, vetoed_loras(store, user_id, stems), weak)
    full_sets = [explicit_pairs(explicit) + s for s in sets]
    arms = combos.combination_arms(family, full_sets)
    set_posterior = combos.set_posterior(stems, family, full_sets,
                                         store.arm_stats(user_id, "lora-combination", stems, arms),
                                         store.arm_stats(user_id, "lora", stems, list(automatic)),
                                         store.base_rate(user_id, "lora-combination"))
    as_choices = tuple(tuple(replace(automatic[name], strength=strength) for name, strength in s) for s in sets)
    cfgs: tuple[float, ...] = () if cfg_explicit else combos.cfg_candidates(family, default_cfg)
    cfg_posteriors = _cfg_posteriors(store, user_id, stems, pool, cfgs) if cfgs else {}
    options = CellOptions(explicit, as_choices, set_posterior, cfgs, cfg_posteriors)
    best_cfg = combos.best_arm(cfg_posteriors[recommended], "CFG") if cfg_posteriors else None
    return LearntSettings(options, combos.best_arm(set_posterior, "LoRA set"), best_cfg)


def _cfg_posteriors(store: PreferenceStore, user_id: str, stems: Sequence[str], pool: Sequence[str],
                    cfgs: Sequence[float]) -> dict[str, Posterior]:
    """Per checkpoint of the pool, the posterior of its CFG arms (the others' evidence shared)."""
    every = [arm for checkpoint in pool for arm in combos.cfg_arms(checkpoint, cfgs)]
    found = store.arm_stats(user_id, "cfg", stems, every)
    base = store.base_rate(user_id, "cfg")
    return {checkpoint: combos.posterior_for(
        stems, combos.cfg_arms(checkpoint, cfgs), combos.cfg_evidence(checkpoint, pool, cfgs, found), base)
        for checkpoint in pool}


def learnt_cfgs(store: PreferenceStore, user_id: str, stems: Sequence[str], family: str, pool: Sequence[str],
                default_cfg: float) -> dict[str, float]:
    """The best CFG per checkpoint of the pool for these keywords (a refine's, when the user set
    none): the tier's `default_cfg` until the picks say another of the family's levels is
    better. A refine exploits, so only a level the picks lifted above the user's own base rate
    may displace the default: not an untried one, nor one that merely got fewer unpicked images."""
    cfgs = combos.cfg_candidates(family, default_cfg)
    base = prior_rate(store.base_rate(user_id, "cfg"))
    best: dict[str, float] = {}
    for checkpoint, posterior in _cfg_posteriors(store, user_id, stems, pool, cfgs).items():
        eligible = posterior.mean > base
        eligible[0] = True  # the default (cfg_candidates puts it first)
        best[checkpoint] = cfgs[int(np.argmax(np.where(eligible, posterior.mean, -1.0)))]
    return best


def negative_suggestions(store: PreferenceStore, user_id: str, stems: Sequence[str],
                         negative_prompt: str) -> list[NegativeSuggestion]:
    """Negative terms the user's history backs for these keywords, not yet in the prompt, not dismissed."""
    terms = store.arm_stats(user_id, "negative-term", stems)
    totals = {stem: sum_stats(store.arm_stats(user_id, "checkpoint", [stem]).values()) for stem in stems}
    dismissed = store.rules(user_id, "negative-dismissal")
    return suggest_negatives(stems, terms, totals, negative_terms(negative_prompt), dismissed)


def explicit_pairs(explicit: Sequence[LoraChoice]) -> tuple[tuple[str, float], ...]:
    return tuple((c.name, round(c.strength, 2)) for c in explicit)

