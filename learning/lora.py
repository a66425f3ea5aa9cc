"""Auto-LoRA: which LoRAs fit a prompt, at which strength, safely for the checkpoint's family.

Safety first: ComfyUI applies a LoRA of another base model by silently skipping the keys it cannot
map, so the user gets an unexplained image. Therefore a LoRA whose base model is known and differs
from the checkpoint family is never chosen automatically; a LoRA of unknown base (no metadata) is
chosen only on a file-name match, only when its name does not hint at another family, flagged and
at the lowest strength. An explicit `<lora:...>` tag is the user's word: it is kept with its
strength and takes a slot, but flagged with a reason when its base model is known to differ.

Relevance of a LoRA to the prompt keywords (0..1):
* each keyword scores its best match against the LoRA's terms: file-name tokens and trigger words
  count `NAME_WEIGHT`, training tags `TAG_WEIGHT` × (tag count / the LoRA's top tag count); a match
  is an exact stem match (a phrase keyword needs all its stems in the term) or, failing that, a
  fuzzy match of the spelled-out forms ("cyberpunk" ~ "cyber punk", "portait" ~ "portrait") at
  rapidfuzz ratio ≥ `FUZZY_MIN_RATIO`, scaled by the ratio;
* keyword scores combine as a noisy-or, 1 - Π(1 - s): more matching keywords, higher relevance,
  never above 1;
* with a learned `preference` (0..1 per LoRA for these keywords, 0.5 = no evidence), the score
  is the even blend of relevance and preference, so a LoRA users keep selecting ranks first.

Centrality: a match is *central* when some keyword meets the LoRA's name, a trigger word or a top
tag (a share of at least `CENTRAL_TAG_SHARE` of its most frequent tag's). A LoRA matched only on
rarer tags (a film-grain LoRA's secondary "portrait" tag) is a weak match: it ranks low (its tag
weight is small), its trigger word is not added to the prompt unless the preference says the user
likes it, and it is `central=False`, so the learnt LoRA sets (`learning.recommend.combinations`)
test it in Explore but never apply it without evidence: learning, not one tag hit, decides.

Strength = 0.5 + 0.3 × score (0.5–0.8): relevant LoRAs get the stronger effect; flagged ones 0.5.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from rapidfuzz import fuzz, process

from families.accelerators import recognise as recognise_accelerator
from families.recognise import family_from_metadata, family_from_name, file_stem, lora_fits, raw_name_tokens
from learning.keywords import content_words, stem
from learning.models import ExplicitLora, Keyword, LoraChoice, LoraInfo, ParsedPrompt

log = logging.getLogger(__name__)

NAME_WEIGHT = 0.8
TAG_WEIGHT = 0.5
FUZZY_MIN_RATIO = 85.0
FUZZY_MIN_LENGTH = 4
MIN_RELEVANCE = 0.25
CENTRAL_TAG_SHARE = 0.4  # a tag at least this share of the top tag's frequency is a top tag
PREFERENCE_BLEND = 0.5
NEUTRAL_PREFERENCE = 0.5
MIN_STRENGTH = 0.5
MAX_STRENGTH = 0.8
MAX_TAGS = 64
DEFAULT_TOP_K = 3

_FORMAT_TOKENS = frozenset(
    {"xl", "sdxl", "sd", "sd1", "sd15", "sd2", "sd21", "lora", "lyco", "lycoris", "locon", "loha",
     "lokr", "safetensors"}
)
_VERSION_TOKEN = re.compile(r"^(?:[a-z]|ver|ep|epoch)?\d+$")
_SUBJECT_COUNT_TAG = re.compile(r"^\d+(?:girl|boy|other)s?$")
_GENERIC_TAG_WORDS = frozenset({"solo", "looking", "viewer", "simple", "background"})


# --- reading what ComfyUI tells about a LoRA -------------------------------------------------


def lora_info_from_metadata(name: str, metadata: Mapping[str, str] | None) -> LoraInfo:
    """Build a LoraInfo from `/view_metadata/loras` (all values are strings; None = no metadata)."""
    metadata = metadata or {}
    tag_counts = _tag_counts(name, metadata.get("ss_tag_frequency"))
    total = sum(tag_counts.values())
    ranked = sorted(tag_counts.items(), key=lambda item: (-item[1], item[0]))[:MAX_TAGS]
    tags = tuple(tag for tag, _ in ranked)
    title = (metadata.get("modelspec.title") or metadata.get("ss_output_name") or "").strip()
    base_model = family_from_metadata(metadata)
    return LoraInfo(
        name=name,
        base_model=base_model,
        accelerator=recognise_accelerator(name, metadata, base_model, "lora"),
        tags=tags,
        trigger_words=_trigger_words(metadata.get("modelspec.trigger_phrase"), tags),
        title=title or None,
        tag_shares=tuple(count / total for _, count in ranked),
    )


def _tag_counts(name: str, raw: str | None) -> Counter[str]:
    """Sum kohya's `ss_tag_frequency` ({dataset: {tag: count}} as a JSON string) over datasets."""
    counts: Counter[str] = Counter()
    if not raw:
        return counts
    try:
        datasets = json.loads(raw)
    except (TypeError, ValueError) as error:
        log.info("LoRA %s: unreadable ss_tag_frequency (%s); no tags", name, error)
        return counts
    for dataset in datasets.values() if isinstance(datasets, dict) else ():
        for tag, count in dataset.items() if isinstance(dataset, dict) else ():
            if isinstance(count, (int, float)) and math.isfinite(count) and count > 0:
                cleaned = str(tag).strip().lower()
                if cleaned:
                    counts[cleaned] += count
    return counts


def _trigger_words(trigger_phrase: str | None, tags: Sequence[str]) -> tuple[str, ...]:
    """The author's trigger phrase(s), else the most frequent tag that carries meaning."""
    if trigger_phrase and trigger_phrase.strip():
        return tuple(part.strip() for part in trigger_phrase.split(",") if part.strip())
    meaningful = next((tag for tag in tags if not _is_generic_tag(tag)), None)
    return (meaningful,) if meaningful else ()


def _is_generic_tag(tag: str) -> bool:
    """Quality tags, subject counts ("1girl") and framing boilerplate make useless triggers."""
    return not [
        word
        for word in content_words(tag)
        if not _SUBJECT_COUNT_TAG.match(word) and word not in _GENERIC_TAG_WORDS
    ]


def name_tokens(filename: str) -> list[str]:
    """Content tokens of a LoRA file name: no folders' format hints, versions, numbers or "xl".

    `xl/film_grain_xl.safetensors` → ["film", "grain"]; "xl" is a family hint, not content.
    """
    tokens: list[str] = []
    for token in raw_name_tokens(filename):
        if len(token) > 1 and token not in _FORMAT_TOKENS and not _VERSION_TOKEN.match(token):
            if token not in tokens:
                tokens.append(token)
    return tokens


# --- relevance -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Terms:
    """A LoRA's matchable terms, prepared once per LoraInfo (they do not change between prompts).

    `compacts[i]` is term i spelled out without spaces, `weights[i]` its weight, `named[i]` whether
    it comes from the file name, `central[i]` whether it is the name, a trigger or a top tag;
    `by_stem` maps a word stem to the terms that hold it.
    """

    compacts: tuple[str, ...]
    weights: np.ndarray
    named: np.ndarray
    central: np.ndarray
    by_stem: Mapping[str, frozenset[int]]
    origins: tuple[str, ...] = ()  # term i in words: "file name 'anime'", "trigger word 'x'", "tag 'y'"


@functools.lru_cache(maxsize=4096)
def _prepare(lora: LoraInfo) -> _Terms:
    tokens = name_tokens(lora.name)
    pairs = [f"{first} {second}" for first, second in zip(tokens, tokens[1:])]
    shares = lora.tag_shares if len(lora.tag_shares) == len(lora.tags) else [1.0] * len(lora.tags)
    top_share = max(shares, default=0.0) or 1.0
    sources = [(text, NAME_WEIGHT, True, True, "file name") for text in tokens + pairs]
    sources += [(trigger, NAME_WEIGHT, False, True, "trigger word") for trigger in lora.trigger_words]
    sources += [(tag, TAG_WEIGHT * share / top_share, False, share >= CENTRAL_TAG_SHARE * top_share, "tag")
                for tag, share in zip(lora.tags, shares)]
    compacts: list[str] = []
    weights: list[float] = []
    named: list[bool] = []
    central: list[bool] = []
    origins: list[str] = []
    by_stem: dict[str, set[int]] = {}
    for text, weight, from_name, is_central, origin in sources:
        words = content_words(text.replace("-", " "))  # keywords never hold the other words
        if not words:
            continue
        for word in words:
            by_stem.setdefault(stem(word), set()).add(len(compacts))
        compacts.append("".join(words))
        weights.append(weight)
        named.append(from_name)
        central.append(is_central)
        origins.append(f"{origin} '{text}'")
    return _Terms(
        compacts=tuple(compacts),
        weights=np.array(weights, dtype=float),
        named=np.array(named, dtype=bool),
        central=np.array(central, dtype=bool),
        by_stem={key: frozenset(indices) for key, indices in by_stem.items()},
        origins=tuple(origins),
    )


def _spelled_out(keyword: Keyword) -> list[str]:
    """The keyword's runs of adjacent words, glued: "cyber punk street" → "cyberpunk", ... ."""
    words = keyword.display.replace("-", " ").split()
    return [
        "".join(words[start:end])
        for start in range(len(words))
        for end in range(start + 1, len(words) + 1)
    ]


def _match_matrix(keywords: Sequence[Keyword], terms: _Terms) -> np.ndarray:
    """Keywords × terms: 1.0 where a term holds all the keyword's stems, else fuzzy ratio / 100.

    The fuzzy ratio is the best of the keyword's spelled-out forms, counted from `FUZZY_MIN_RATIO`
    up (rapidfuzz computes the whole matrix at once).
    """
    match = np.zeros((len(keywords), len(terms.compacts)))
    forms = [(row, form) for row, keyword in enumerate(keywords) for form in _spelled_out(keyword)]
    forms = [(row, form) for row, form in forms if len(form) >= FUZZY_MIN_LENGTH]
    if forms and terms.compacts:
        ratios = process.cdist(
            [form for _, form in forms], terms.compacts, scorer=fuzz.ratio,
            score_cutoff=FUZZY_MIN_RATIO, dtype=np.float64,
        )
        ratios[:, [len(compact) < FUZZY_MIN_LENGTH for compact in terms.compacts]] = 0.0
        np.maximum.at(match, np.array([row for row, _ in forms]), ratios / 100.0)
    for row, keyword in enumerate(keywords):
        holders = [terms.by_stem.get(part, frozenset()) for part in keyword.stem.split()]
        exact = frozenset.intersection(*holders) if holders else frozenset()
        match[row, sorted(exact)] = 1.0
    return match


@dataclass(frozen=True)
class _Relevance:
    score: float
    name_match: bool
    central: bool  # some keyword meets the name, a trigger or a top tag


def _relevance(keywords: Sequence[Keyword], lora: LoraInfo) -> _Relevance:
    terms = _prepare(lora)
    if not keywords or not terms.compacts:
        return _Relevance(score=0.0, name_match=False, central=False)
    match = _match_matrix(keywords, terms)
    best = (match * terms.weights).max(axis=1)
    return _Relevance(
        score=float(1.0 - np.prod(1.0 - best)),
        name_match=bool((match[:, terms.named] > 0).any()),
        central=bool((match[:, terms.central] > 0).any()),
    )


def strength_for(score: float, *, flagged: bool = False) -> float:
    """0.5–0.8 rising with the score; an unverified (flagged) LoRA stays at the gentle end."""
    if flagged:
        return MIN_STRENGTH
    bounded = min(max(score, 0.0), 1.0)
    return round(MIN_STRENGTH + (MAX_STRENGTH - MIN_STRENGTH) * bounded, 2)


def _missing_trigger(lora: LoraInfo | None, keywords: Sequence[Keyword]) -> str | None:
    """The LoRA's first trigger word whose words the prompt's keywords do not already hold."""
    present = {part for keyword in keywords for part in keyword.stem.split()}
    for trigger in lora.trigger_words if lora else ():
        stems = {stem(word) for word in content_words(trigger)}
        if not stems or not stems <= present:
            return trigger
    return None


# --- choosing --------------------------------------------------------------------------------


def match_loras(
    keywords: Sequence[Keyword],
    loras: Sequence[LoraInfo],
    family: str,
    *,
    preference: Mapping[str, float] | None = None,
    top_k: int = DEFAULT_TOP_K,
) -> list[LoraChoice]:
    """The `top_k` LoRAs that fit the keywords and the checkpoint `family`, best first."""
    ranked: list[tuple[float, LoraChoice]] = []
    for lora in loras:
        if lora.accelerator is not None:  # infrastructure (the draft tier's business), not style
            continue
        flagged = lora.base_model is None
        if not flagged and not lora_fits(family, lora.base_model):
            log.debug("LoRA %s skipped: base %s, checkpoint %s", lora.name, lora.base_model, family)
            continue
        relevance = _relevance(keywords, lora)
        if flagged and not _unknown_base_allowed(lora, relevance, family):
            continue
        liked = preference.get(lora.name, NEUTRAL_PREFERENCE) if preference is not None else None
        if relevance.score < MIN_RELEVANCE and (liked is None or liked <= NEUTRAL_PREFERENCE):
            continue
        score = relevance.score if liked is None else _blend(relevance.score, liked)
        wanted = relevance.central or (liked is not None and liked > NEUTRAL_PREFERENCE)
        choice = LoraChoice(
            name=lora.name,
            strength=strength_for(score, flagged=flagged),
            relevance=round(score, 4),
            trigger_word=_missing_trigger(lora, keywords) if wanted else None,
            flagged=flagged,
            reason="base model unknown; chosen on its file name" if flagged else None,
            central=wanted,
        )
        ranked.append((score, choice))
    ranked.sort(key=lambda item: (-item[0], item[1].name))
    chosen = [choice for _, choice in ranked[: max(top_k, 0)]]
    log.info(
        "Auto-LoRA for %s on %s: %s",
        [keyword.stem for keyword in keywords],
        family,
        [(choice.name, choice.strength) for choice in chosen] or "none relevant",
    )
    return chosen


def _unknown_base_allowed(lora: LoraInfo, relevance: _Relevance, family: str) -> bool:
    """Unknown base: only on a file-name match, and never when the name hints at another family."""
    hint = family_from_name(lora.name)
    allowed = relevance.name_match and (hint is None or lora_fits(family, hint))
    if relevance.score > 0 and not allowed:
        log.debug("LoRA %s skipped: base unknown (name hint %s, name match %s)",
                  lora.name, hint, relevance.name_match)
    return allowed


def _blend(relevance: float, liked: float) -> float:
    return (1.0 - PREFERENCE_BLEND) * relevance + PREFERENCE_BLEND * min(max(liked, 0.0), 1.0)


def explicit_choices(
    explicit: Sequence[ExplicitLora],
    loras: Sequence[LoraInfo],
    family: str,
    keywords: Sequence[Keyword] = (),
) -> list[LoraChoice]:
    """The prompt's `<lora:...>` tags as choices, resolved to the servers' file names.

    Never dropped (the user asked for them): a tag naming a LoRA the servers lack, or one whose
    base model (metadata, else a name hint) differs from `family`, comes back flagged with a
    readable reason so the app can warn.
    """
    choices: list[LoraChoice] = []
    for tag in explicit:
        lora = resolve_lora(tag.name, loras)
        reason = _explicit_problem(tag.name, lora, family)
        if reason:
            log.warning("explicit LoRA %s: %s", tag.name, reason)
        choices.append(
            LoraChoice(
                name=lora.name if lora else tag.name,
                strength=tag.strength,
                relevance=1.0,
                trigger_word=_missing_trigger(lora, keywords),
                flagged=reason is not None,
                explicit=True,
                reason=reason,
            )
        )
    return choices


def resolve_lora(name: str, loras: Sequence[LoraInfo]) -> LoraInfo | None:
    """The LoRA a prompt tag means: exact file name, else the same bare name (case-insensitive)."""
    exact = next((lora for lora in loras if lora.name == name), None)
    wanted = file_stem(name).lower()
    return exact or next((lora for lora in loras if file_stem(lora.name).lower() == wanted), None)


def _explicit_problem(name: str, lora: LoraInfo | None, family: str) -> str | None:
    if lora is None:
        return f"LoRA {name!r} is not on the servers"
    base = lora.base_model or family_from_name(lora.name)
    if base is not None and not lora_fits(family, base):
        return f"{base} LoRA on a {family} checkpoint: ComfyUI will skip its weights"
    return None


def choose_loras(
    parsed: ParsedPrompt,
    loras: Sequence[LoraInfo],
    family: str,
    *,
    auto: bool = True,
    preference: Mapping[str, float] | None = None,
    top_k: int = DEFAULT_TOP_K,
) -> list[LoraChoice]:
    """Explicit tags first (all kept, each takes a slot), then Auto-LoRA fills the free slots."""
    explicit = explicit_choices(parsed.explicit_loras, loras, family, parsed.keywords)
    if not auto:
        return explicit
    taken = {choice.name for choice in explicit}
    candidates = [lora for lora in loras if lora.name not in taken]
    free = top_k - len(explicit)
    automatic = match_loras(parsed.keywords, candidates, family, preference=preference, top_k=free)
    return explicit + automatic


def lora_reason(parsed: ParsedPrompt, name: str, loras: Sequence[LoraInfo]) -> str:
    """Why the LoRA file `name` went with this prompt, for a person: the prompt's own tag, else each
    keyword and the term of the LoRA it matched best (file name, trigger word or training tag) by
    the same matching Auto-LoRA scores with, else (no match) the user's earlier picks; and the
    trigger word it adds."""
    lora = resolve_lora(name, loras)
    tag = next((t for t in parsed.explicit_loras if file_stem(t.name).lower() == file_stem(name).lower()), None)
    if tag is not None:
        return f"your <lora:{tag.name}:{tag.strength:g}> tag"
    if lora is None:
        return "not on the servers any more"
    if lora.accelerator is not None:
        return "the fast-draft accelerator"
    terms = _prepare(lora)
    found: dict[str, str] = {}  # the LoRA's term → the first keyword that matched it best
    if parsed.keywords and terms.compacts:
        scored = _match_matrix(parsed.keywords, terms) * terms.weights
        for row, keyword in enumerate(parsed.keywords):
            if scored[row].max() > 0:
                found.setdefault(terms.origins[int(scored[row].argmax())], keyword.display)
    why = "; ".join(f"'{keyword}' matched its {term}" for term, keyword in found.items()) if found \
        else "no keyword match: chosen from what you selected before"
    trigger = _missing_trigger(lora, parsed.keywords)
    return why + (f"; adds its trigger word '{trigger}'" if trigger else "")


# --- applying --------------------------------------------------------------------------------


def apply_triggers(prompt_text: str, choices: Sequence[LoraChoice]) -> str:
    """Append each trigger word once, unless the prompt already has it (whole word, any case).

    Appended rather than prepended so the user's own words keep the front positions.
    """
    text = prompt_text
    for trigger in (choice.trigger_word for choice in choices if choice.trigger_word):
        pattern = rf"(?<!\w){re.escape(trigger)}(?!\w)"
        if re.search(pattern, text, re.IGNORECASE):
            continue
        text = f"{text.rstrip(' ,')}, {trigger}" if text.strip(" ,") else trigger
    return text


def vary_loras(choices: Sequence[LoraChoice], groups: int) -> list[tuple[LoraChoice, ...]]:
    """LoRA sets for the batch's checkpoint groups in Explore mode, so the grid compares them.

    Explicit choices go to every group (the user asked for them). The automatic ones cycle
    through: each alone in relevance order, then all together (when more than one), then none
    (a baseline without Auto-LoRA). 3 groups, A and B → [A], [B], [A, B]; 3 groups, A only →
    [A], [], [A]; more groups than combinations → the cycle repeats.
    """
    if groups <= 0:
        return []
    explicit = tuple(choice for choice in choices if choice.explicit)
    automatic = [choice for choice in choices if not choice.explicit]
    if not automatic:
        return [explicit] * groups
    combinations = [(choice,) for choice in automatic]
    if len(automatic) > 1:
        combinations.append(tuple(automatic))
    combinations.append(())
    return [explicit + combinations[index % len(combinations)] for index in range(groups)]
