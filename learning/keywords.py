"""Prompt → keywords that key the preference statistics, plus the clean text ComfyUI gets.

Keywords are what a prompt is *about* (subject and style), because preferences differ per subject
and style: "anime" and "photorealistic" want different checkpoints. So:

* weight syntax is stripped (`(word:1.2)`, `((word))`, `[word]`, `\\(`), `<lora:name:0.8>` tags
  are pulled out as explicit LoRA choices;
* stop words and generic quality boosters ("masterpiece", "best quality", "highly detailed",
  "8k", "hdr", "lighting") are dropped: they appear in every style's prompts and would carry one
  style's history into another. Style words ("photorealistic", "anime", "watercolor",
  "cinematic", "realistic") are kept: they are exactly what preferences depend on;
* words are stemmed (snowball, English) so "portraits" and "portrait" share statistics; the
  display form is the first surface form seen;
* phrase rule: a comma-separated part of at most four words holding two or three content words
  ("a cyberpunk city", "neon lights") also yields the phrase of its content words
  ("cyberpunk city") after them; longer parts are sentences, not names of a thing;
* order of appearance, de-duplicated by stem, at most `MAX_KEYWORDS`.
"""

from __future__ import annotations

import functools
import logging
import math
import re
import threading
from collections.abc import Iterator

import snowballstemmer

from learning.models import ExplicitLora, Keyword, ParsedPrompt

log = logging.getLogger(__name__)

MAX_KEYWORDS = 12
MAX_PHRASE_PART_WORDS = 4
DEFAULT_LORA_STRENGTH = 1.0

STOP_WORDS = frozenset(
    """
    a an the and or but nor of in on at by for to from with without within into onto upon over
    under above below between behind beside near off out up down as is are was were be been being
    am do does did has have had it its this that these those there here he she they them his her
    their our your my me we you i who whom whose which what when where why how all any both each
    few more most other some such no not only own same so than too very can will just should now
    also while much many one two three s t
    style styles styled art artwork image picture shot scene
    """.split()
)
"""Words that carry no subject or style. "style"/"image" are here: "anime style" is about anime."""

GENERIC_WORDS = frozenset(
    """
    masterpiece masterpieces quality best high higher highly ultra uhd hd hdr 4k 8k 16k highres
    absurdres detailed detail details intricate intricately sharp focus beautiful stunning
    gorgeous amazing awesome perfect professional award awards winning award-winning trending
    artstation resolution lighting epic insane extremely super good great nice lowres worst
    """.split()
)
"""Quality boosters, matched by surface form ("lighting" goes, "neon lights" stays): they appear
in every style's prompts, so they carry no style."""

# Stems snowball merges although they mean different things for image styles.
_STEM_EXCEPTIONS = {"anime": "anime", "animes": "anime"}

# A snowball stemmer keeps the word it is working on in the object, so two threads sharing one
# get wrong stems and IndexErrors (seen as a 500 on the first concurrent generates of a fresh app,
# before the cache below had the words): one stemmer per thread.
_STEMMERS = threading.local()
_LORA_TAG = re.compile(r"<\s*lora\s*:([^<>]*)>", re.IGNORECASE)
_WEIGHT = re.compile(r":\s*[-+]?(?:\d+\.?\d*|\.\d+)")
_BREAK = re.compile(r"\bBREAK\b")
_PART_SEPARATORS = re.compile(r"[,;|\n.:]+")
_WORD = re.compile(r"[^\W_]+(?:-[^\W_]+)*")
_EMPTY_PARTS = re.compile(r",(?:\s*,)+")
_SPACE_RUNS = re.compile(r"[ \t]{2,}")


@functools.lru_cache(maxsize=8192)
def stem(word: str) -> str:
    """Snowball stem of one lower-case word (cached: prompts repeat the same words)."""
    return _STEM_EXCEPTIONS.get(word) or _stemmer().stemWord(word) or word


def _stemmer() -> snowballstemmer.stemmer:
    """This thread's English stemmer."""
    stemmer = getattr(_STEMMERS, "english", None)
    if stemmer is None:
        stemmer = _STEMMERS.english = snowballstemmer.stemmer("english")
    return stemmer



def is_content_word(word: str) -> bool:
    """A lower-case word that says something about subject or style."""
    return (
        len(word) > 1
        and word not in STOP_WORDS
        and not word.isdigit()
        and word not in GENERIC_WORDS
    )


def content_words(text: str) -> list[str]:
    """The content words of a fragment of text, lower-cased, in order."""
    return [word for word in _WORD.findall(text.lower()) if is_content_word(word)]


def parse_prompt(prompt: str) -> ParsedPrompt:
    """Split a prompt into ComfyUI text (weights kept, LoRA tags out), keywords, explicit LoRAs.

    NUL characters are dropped everywhere: they are never meant, and break text pipelines.
    """
    prompt = prompt.replace("\x00", "")
    explicit = tuple(_explicit_lora(match.group(1)) for match in _LORA_TAG.finditer(prompt))
    explicit = tuple(lora for lora in explicit if lora is not None)
    text = _tidy(_LORA_TAG.sub(" ", prompt)) if _LORA_TAG.search(prompt) else prompt.strip()
    keywords = tuple(_keywords(text))
    log.debug("prompt keywords: %s; explicit LoRAs: %s", [k.stem for k in keywords], explicit)
    return ParsedPrompt(text=text, keywords=keywords, explicit_loras=explicit)


def _explicit_lora(body: str) -> ExplicitLora | None:
    """`name:0.8` (A1111 also allows `name:te:unet`; the first weight counts) → ExplicitLora."""
    name, _, rest = body.partition(":")
    name = name.strip()
    if not name:
        return None
    weight = rest.partition(":")[0].strip()
    try:
        strength = float(weight) if weight else DEFAULT_LORA_STRENGTH
    except ValueError:
        strength = DEFAULT_LORA_STRENGTH
    if not math.isfinite(strength):
        strength = DEFAULT_LORA_STRENGTH
    return ExplicitLora(name=name, strength=strength)


def _tidy(text: str) -> str:
    """Close the gaps a removed tag leaves (", ," and double spaces) without touching weights."""
    text = _EMPTY_PARTS.sub(",", text)
    text = _SPACE_RUNS.sub(" ", text)
    return text.strip(" \t\n,")


def _keywords(text: str) -> Iterator[Keyword]:
    seen: set[str] = set()
    count = 0
    for words in _parts(text):
        candidates = [Keyword(stem=stem(word), display=word) for word in words]
        if 2 <= len(words) <= 3:
            candidates.append(
                Keyword(stem=" ".join(k.stem for k in candidates), display=" ".join(words))
            )
        for keyword in candidates:
            if keyword.stem in seen:
                continue
            seen.add(keyword.stem)
            yield keyword
            count += 1
            if count == MAX_KEYWORDS:
                return


def _parts(text: str) -> Iterator[list[str]]:
    """Content words per comma-separated part; a part too long to be a phrase is split to words."""
    plain = _WEIGHT.sub(" ", _BREAK.sub(",", text)).lower()
    for part in _PART_SEPARATORS.split(plain):
        words = _WORD.findall(part)
        content = [word for word in words if is_content_word(word)]
        if not content:
            continue
        if len(words) > MAX_PHRASE_PART_WORDS:
            yield from ([word] for word in content)
        else:
            yield content
