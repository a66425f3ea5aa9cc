"""Which arms an image feeds, and how an arm's name is spelled: the one definition of arm kinds.

An arm is something the user's picks teach a selection rate for, per prompt keyword:

* `checkpoint` — the image's checkpoint;
* `lora` — each distinct LoRA it used (the single-LoRA evidence Auto-LoRA already blends in);
* `lora-combination` — its whole LoRA set with strengths, conditioned on the batch's family:
  ``sdxl|anime_style@0.65+film_grain@0.50``, or ``sdxl|none`` without LoRAs (the "none" arm that
  keeps Auto-LoRA honest). An SD1.5 LoRA's history never counts for SDXL: the family is part of
  the name;
* `cfg` — its checkpoint and CFG, ``ckA@7.0`` (learnt per keyword × checkpoint), only when the
  planner chose the CFG: a value the user set in Advanced is never learnt against;
* `negative-term` — each distinct term of the batch's negative prompt (comma-separated, trimmed,
  lower-cased), for negative-prompt suggestions.

The store counts them with the same rule, decay and resets as checkpoints; the SQL twin of these
spellings is `learning.store.counting_rebuild_sql` (the rebuild), held equal by
tests/learning/test_store_agreement.py.
"""

from __future__ import annotations

from collections.abc import Sequence

ARM_KINDS = ("checkpoint", "lora", "lora-combination", "cfg", "negative-term")
NO_LORA = "none"
FAMILY_SEPARATOR = "|"
LORA_SEPARATOR = "+"
STRENGTH_SEPARATOR = "@"


def strength_label(strength: float) -> str:
    """A strength as arm names spell it (two decimals; SQL: printf('%.2f'))."""
    return f"{strength:.2f}"


def cfg_label(cfg: float) -> str:
    """A CFG as arm names spell it (one decimal; SQL: printf('%.1f'))."""
    return f"{cfg:.1f}"


def lora_set_label(loras: Sequence[tuple[str, float]]) -> str:
    """A LoRA set, order-free: its distinct ``name@strength`` sorted, joined by '+'; 'none' if empty."""
    parts = sorted({f"{name}{STRENGTH_SEPARATOR}{strength_label(s)}" for name, s in loras})
    return LORA_SEPARATOR.join(parts) if parts else NO_LORA


def combination_arm(family: str, loras: Sequence[tuple[str, float]]) -> str:
    """The `lora-combination` arm of a LoRA set under a family."""
    return f"{family}{FAMILY_SEPARATOR}{lora_set_label(loras)}"


def combination_loras(arm: str) -> tuple[str, tuple[tuple[str, float], ...]]:
    """(family, ((name, strength), ...)) back from a `lora-combination` arm."""
    family, _, label = arm.partition(FAMILY_SEPARATOR)
    if label == NO_LORA:
        return family, ()
    pairs = (part.rpartition(STRENGTH_SEPARATOR) for part in label.split(LORA_SEPARATOR))
    return family, tuple((name, float(strength)) for name, _, strength in pairs)


def cfg_arm(checkpoint: str, cfg: float) -> str:
    """The `cfg` arm of a checkpoint at a CFG."""
    return f"{checkpoint}{STRENGTH_SEPARATOR}{cfg_label(cfg)}"


def negative_terms(negative_prompt: str) -> tuple[str, ...]:
    """The distinct terms of a negative prompt, in order: split at commas, trimmed of spaces,
    lower-cased, empties dropped (SQL: string_split, trim, lower, list_distinct)."""
    terms = (part.strip(" ").lower() for part in negative_prompt.split(","))
    return tuple(dict.fromkeys(term for term in terms if term))


def image_arms(
    checkpoint: str,
    loras: Sequence[tuple[str, float]],
    family: str,
    cfg: float | None,
    negative_prompt: str,
) -> tuple[tuple[str, str], ...]:
    """Every (arm_kind, arm) one image feeds; `cfg` None: the user set it, so no `cfg` arm."""
    arms = [("checkpoint", checkpoint)]
    arms += [("lora", name) for name in dict.fromkeys(name for name, _ in loras)]
    arms.append(("lora-combination", combination_arm(family, loras)))
    if cfg is not None:
        arms.append(("cfg", cfg_arm(checkpoint, cfg)))
    arms += [("negative-term", term) for term in negative_terms(negative_prompt)]
    return tuple(arms)
