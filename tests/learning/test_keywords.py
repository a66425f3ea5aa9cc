"""Prompt parsing: keywords that key statistics, explicit LoRA tags, text for ComfyUI."""

from __future__ import annotations

import re
import sys
import threading

from hypothesis import given, settings
from hypothesis import strategies as st

import snowballstemmer

from learning.keywords import MAX_KEYWORDS, parse_prompt, stem
from learning.models import ExplicitLora, Keyword

SYNTAX = re.compile(r"[()\[\]{}<>:\\|,]")


def stems(prompt: str) -> list[str]:
    return [keyword.stem for keyword in parse_prompt(prompt).keywords]


def displays(prompt: str) -> list[str]:
    return [keyword.display for keyword in parse_prompt(prompt).keywords]


def test_weight_syntax_is_stripped_from_keywords_but_kept_in_text() -> None:
    prompt = r"(cat:1.2), ((castle)), [forest], (river), \(artist\), {lake}"
    parsed = parse_prompt(prompt)
    assert displays(prompt) == ["cat", "castle", "forest", "river", "artist", "lake"]
    assert parsed.text == prompt


def test_lowercases_and_keeps_first_surface_form_as_display() -> None:
    parsed = parse_prompt("Portraits of knights, portrait, KNIGHT")
    assert parsed.keywords[:2] == (
        Keyword(stem="portrait", display="portraits"),
        Keyword(stem="knight", display="knights"),
    )
    assert stems("Portraits of knights, portrait, KNIGHT") == [
        "portrait", "knight", "portrait knight",
    ]


def test_plural_and_singular_share_a_stem() -> None:
    assert stems("portraits") == stems("portrait")
    assert stems("cities") == stems("city")


def test_anime_and_animal_keep_separate_statistics() -> None:
    assert stems("anime") != stems("animal")


def test_stop_words_and_quality_boosters_are_dropped() -> None:
    prompt = (
        "masterpiece, best quality, high quality, highly detailed, 8k, 4k, hdr, ultra, "
        "beautiful, the, of, a, realistic lighting, sharp focus, trending on artstation"
    )
    assert displays(prompt) == ["realistic"]


def test_style_words_are_kept() -> None:
    assert displays("photorealistic, anime style, watercolor, cinematic") == [
        "photorealistic", "anime", "watercolor", "cinematic",
    ]


def test_short_parts_also_give_a_phrase_after_their_words() -> None:
    assert displays("a cyberpunk city, neon lights") == [
        "cyberpunk", "city", "cyberpunk city", "neon", "lights", "neon lights",
    ]
    phrase = parse_prompt("cyberpunk city").keywords[-1]
    assert phrase.stem == "cyberpunk citi" and phrase.display == "cyberpunk city"


def test_long_parts_and_single_words_give_no_phrase() -> None:
    assert displays("portrait of an old man smiling, castle") == [
        "portrait", "old", "man", "smiling", "castle",
    ]
    assert displays("red green blue yellow, cat") == ["red", "green", "blue", "yellow", "cat"]


def test_order_of_appearance_deduplicated() -> None:
    assert displays("dog, cat, dogs, bird, cat") == ["dog", "cat", "bird"]


def test_keywords_are_capped() -> None:
    words = " ".join(f"word{chr(97 + i)}x" for i in range(26))
    assert len(parse_prompt(words).keywords) == MAX_KEYWORDS


def test_explicit_lora_tags_are_pulled_out_of_the_text() -> None:
    parsed = parse_prompt("a cat, <lora:anime_style_v2:0.8>, <LORA:add_detail>, sitting")
    assert parsed.explicit_loras == (
        ExplicitLora("anime_style_v2", 0.8),
        ExplicitLora("add_detail", 1.0),
    )
    assert parsed.text == "a cat, sitting"
    assert displays("a cat, <lora:anime_style_v2:0.8>") == ["cat"]


def test_explicit_lora_tag_variants() -> None:
    parsed = parse_prompt("<lora:xl/film grain:0.6:0.3> <lora:neg:-0.5> <lora:bad:abc> <lora::1>")
    assert parsed.explicit_loras == (
        ExplicitLora("xl/film grain", 0.6),
        ExplicitLora("neg", -0.5),
        ExplicitLora("bad", 1.0),
    )
    assert parsed.text == ""


def test_break_keyword_separates_parts() -> None:
    assert "break" not in displays("red car BREAK blue sky")
    assert displays("red car BREAK blue sky") == [
        "red", "car", "red car", "blue", "sky", "blue sky",
    ]


def test_empty_and_syntax_only_prompts() -> None:
    assert parse_prompt("").keywords == ()
    assert parse_prompt("((([[[ :1.2 ]]])))").keywords == ()
    assert parse_prompt("(unbalanced:1.3, [open").keywords[0].display == "unbalanced"


def test_huge_prompt_is_capped_and_keeps_order() -> None:
    prompt = ", ".join(f"topic{i}" for i in range(20_000))
    assert len(prompt) > 100_000
    assert displays(prompt)[:2] == ["topic0", "topic1"]
    assert len(parse_prompt(prompt).keywords) == MAX_KEYWORDS


def test_null_bytes_emoji_and_rtl() -> None:
    parsed = parse_prompt("ca\x00t 🐱 in a garden, قطة جميلة")
    assert "\x00" not in parsed.text
    assert displays("ca\x00t 🐱 in a garden, قطة جميلة") == [
        "cat", "garden", "cat garden", "قطة", "جميلة", "قطة جميلة",
    ]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_any_text_parses_to_clean_keywords(prompt: str) -> None:
    parsed = parse_prompt(prompt)
    assert len(parsed.keywords) <= MAX_KEYWORDS
    assert len({keyword.stem for keyword in parsed.keywords}) == len(parsed.keywords)
    for keyword in parsed.keywords:
        for value in (keyword.stem, keyword.display):
            assert value and value == value.lower() and value == value.strip()
            assert not SYNTAX.search(value) and "\x00" not in value
    assert "\x00" not in parsed.text


syntax_soup = st.lists(
    st.sampled_from(
        ["(", ")", "[", "]", "\\(", "<lora:", "<lora:x:0.5>", ">", ":1.2", ",", "BREAK", " ",
         "cat", "Dogs", "🐱", "\x00", "قطة", "masterpiece", "{a|b}", ":", "\n"]
    ),
    max_size=60,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(syntax_soup)
def test_prompt_syntax_soup_never_leaks_into_keywords(prompt: str) -> None:
    parsed = parse_prompt(prompt)
    for keyword in parsed.keywords:
        assert not SYNTAX.search(keyword.stem) and keyword.stem == keyword.stem.lower()
    assert "<lora:x:0.5>" not in parsed.text
    for lora in parsed.explicit_loras:
        assert lora.name and ">" not in lora.name


def test_threads_stemming_at_once_get_the_stems_one_thread_gets() -> None:
    """A fresh app's first generates parse prompts on several threads before the stem cache holds
    their words: a shared snowball stemmer gave wrong stems and IndexErrors (a 500) there."""
    suffixes = ("", "s", "ing", "ed", "ness", "ly", "ation", "ers", "est", "ful")
    words = [f"{root}{n}{suffix}" for n in range(150) for root in ("lighthous", "paint", "dream")
             for suffix in suffixes]  # unique words: none in the cache yet
    expected = {w: snowballstemmer.stemmer("english").stemWord(w) or w for w in words}
    stem.cache_clear()
    seen: list[tuple[str, str]] = []
    failures: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            seen.extend((w, stem(w)) for w in words[offset::4])
        except BaseException as exc:  # noqa: BLE001 - the test reports any of them
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
        stem.cache_clear()
    assert not failures, failures[:3]
    assert {w: s for w, s in seen} == expected
