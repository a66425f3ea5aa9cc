"""Auto-LoRA: metadata reading, relevance, base-model safety, triggers, Explore variation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from learning.keywords import parse_prompt
from learning.lora import (
    apply_triggers,
    choose_loras,
    explicit_choices,
    lora_info_from_metadata,
    match_loras,
    name_tokens,
    strength_for,
    vary_loras,
)
from learning.models import ExplicitLora, LoraChoice, LoraInfo

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "comfy"
CAPTURE_FOR_FILE = {
    "anime_style_v2.safetensors": "lora_with_metadata",
    "cyberpunk_neon_xl.safetensors": "lora_with_metadata_sdxl",
    "fantasy_landscape.safetensors": "api_prefix_variant",
    "xl/detail_tweaker_xl.safetensors": "lora_in_subfolder",
    "tiny_sd15_test_lora.safetensors": "real_tiny_lora",
}


def captured_metadata() -> dict[str, dict[str, str] | None]:
    """What the real ComfyUI answered to /view_metadata/loras for each LoRA it listed."""
    captures = json.loads((FIXTURES / "view_metadata.json").read_text())
    listed = json.loads((FIXTURES / "models_loras.json").read_text())["json"]
    out: dict[str, dict[str, str] | None] = {}
    for name in listed:
        capture = captures.get(CAPTURE_FOR_FILE.get(name, "lora_without_metadata"))
        out[name] = capture.get("json") if capture["status"] == 200 else None
    return out


@pytest.fixture(scope="module")
def loras() -> list[LoraInfo]:
    return [lora_info_from_metadata(name, meta) for name, meta in captured_metadata().items()]


def by_name(loras: list[LoraInfo], name: str) -> LoraInfo:
    return next(lora for lora in loras if lora.name == name)


def names(choices: list[LoraChoice]) -> list[str]:
    return [choice.name for choice in choices]


def auto(
    prompt: str, loras: list[LoraInfo], family: str, preference: dict[str, float] | None = None,
    top_k: int = 3,
) -> list[LoraChoice]:
    keywords = parse_prompt(prompt).keywords
    return match_loras(keywords, loras, family, preference=preference, top_k=top_k)


# --- metadata --------------------------------------------------------------------------------


def test_sd15_lora_from_captured_metadata(loras: list[LoraInfo]) -> None:
    anime = by_name(loras, "anime_style_v2.safetensors")
    assert anime.base_model == "sd15"
    assert anime.tags == ("anime", "1girl", "long hair", "smile")
    assert anime.tag_shares[0] == pytest.approx(40 / 91)
    assert anime.trigger_words == ("anime",)
    assert anime.title == "Anime Style v2"


def test_sdxl_lora_and_subfolder_from_captured_metadata(loras: list[LoraInfo]) -> None:
    assert by_name(loras, "cyberpunk_neon_xl.safetensors").base_model == "sdxl"
    tweaker = by_name(loras, "xl/detail_tweaker_xl.safetensors")
    assert tweaker.base_model == "sdxl"
    assert tweaker.trigger_words == ()  # "detailed" and "intricate" are quality words


def test_tags_sum_over_datasets(loras: list[LoraInfo]) -> None:
    tiny = by_name(loras, "tiny_sd15_test_lora.safetensors")
    assert tiny.tags == ("tiny test", "random noise", "abstract", "1girl")
    assert sum(tiny.tag_shares) == pytest.approx(1.0)
    assert by_name(loras, "fantasy_landscape.safetensors").title == "fantasy_landscape"


def test_metadata_less_lora_has_unknown_base(loras: list[LoraInfo]) -> None:
    assert by_name(loras, "add_detail.safetensors") == LoraInfo("add_detail.safetensors", None)


@pytest.mark.parametrize(
    ("metadata", "base"),
    [
        ({"ss_base_model_version": "sdxl_base_v1-0"}, "sdxl"),
        ({"ss_base_model_version": "sd_v1"}, "sd15"),
        ({"ss_base_model_version": "sd_1.5"}, "sd15"),
        ({"ss_base_model_version": "sd_v2"}, "sd2"),
        ({"modelspec.architecture": "stable-diffusion-v1/lora", "ss_base_model_version": "sdxl"},
         "sd15"),
        ({"modelspec.architecture": "flux-1-dev/lora"}, "flux"),
        ({"ss_network_dim": "8"}, None),
    ],
)
def test_base_model_rules(metadata: dict[str, str], base: str | None) -> None:
    assert lora_info_from_metadata("x.safetensors", metadata).base_model == base


def test_trigger_phrase_wins_over_tags() -> None:
    info = lora_info_from_metadata(
        "ink.safetensors",
        {"modelspec.trigger_phrase": "inkpunk, ink style",
         "ss_tag_frequency": '{"a": {"cat": 9}}'},
    )
    assert info.trigger_words == ("inkpunk", "ink style")


def test_trigger_skips_generic_tags() -> None:
    info = lora_info_from_metadata(
        "x.safetensors",
        {"ss_tag_frequency": '{"d": {"1girl": 50, "solo": 40, "masterpiece": 30, "red cape": 5}}'},
    )
    assert info.trigger_words == ("red cape",)


@pytest.mark.parametrize(
    "raw", ["{not json", "[1, 2]", '{"d": [1]}', '{"d": {"tag": "many"}}', '{"d": {"t": -3}}', ""]
)
def test_bad_tag_frequency_is_tolerated(raw: str) -> None:
    info = lora_info_from_metadata("x.safetensors", {"ss_tag_frequency": raw})
    assert info.tags == () and info.trigger_words == ()


@pytest.mark.parametrize(
    ("filename", "tokens"),
    [
        ("anime_style_v2.safetensors", ["anime", "style"]),
        ("xl/film_grain_xl.safetensors", ["film", "grain"]),
        ("detailTweakerXL-v1.5.safetensors", ["detail", "tweaker"]),
        ("styles\\CyberPunk_Neon_e10.pt", ["styles", "cyber", "punk", "neon"]),
        ("3d_render_1024.ckpt", ["3d", "render"]),
        ("sd15/add_detail", ["add", "detail"]),
    ],
)
def test_name_tokens(filename: str, tokens: list[str]) -> None:
    assert name_tokens(filename) == tokens


# --- relevance and safety --------------------------------------------------------------------


def test_matches_by_name_trigger_and_tags(loras: list[LoraInfo]) -> None:
    assert names(auto("anime girl", loras, "sd15")) == ["anime_style_v2.safetensors"]
    assert names(auto("a castle in the mountains", loras, "sd15")) == [
        "fantasy_landscape.safetensors"
    ]
    assert names(auto("cyberpunk city at night", loras, "sdxl")) == [
        "cyberpunk_neon_xl.safetensors"
    ]


def test_fuzzy_matches_spelling_variants(loras: list[LoraInfo]) -> None:
    assert names(auto("cyber punk street", loras, "sdxl")) == ["cyberpunk_neon_xl.safetensors"]
    assert names(auto("cyberpunck alley", loras, "sdxl")) == ["cyberpunk_neon_xl.safetensors"]
    split_name = [LoraInfo("cyber_punk_v1.safetensors", "sdxl")]
    assert names(auto("cyberpunk", split_name, "sdxl")) == ["cyber_punk_v1.safetensors"]


def test_name_or_trigger_match_outranks_tag_match() -> None:
    by_tag = LoraInfo("moody.safetensors", "sd15", tags=("neon",), tag_shares=(1.0,))
    by_name_match = LoraInfo("neon_glow.safetensors", "sd15")
    ranked = auto("neon", [by_tag, by_name_match], "sd15")
    assert names(ranked) == ["neon_glow.safetensors", "moody.safetensors"]
    assert ranked[0].relevance > ranked[1].relevance


def test_tag_weight_follows_its_frequency_share() -> None:
    frequent = LoraInfo("a.safetensors", "sd15", tags=("castle", "x"), tag_shares=(0.5, 0.1))
    rare = LoraInfo("b.safetensors", "sd15", tags=("y", "castle"), tag_shares=(0.5, 0.3))
    ranked = auto("castle", [rare, frequent], "sd15")
    assert names(ranked) == ["a.safetensors", "b.safetensors"]


def test_weak_tag_matches_are_not_chosen(loras: list[LoraInfo]) -> None:
    # "hair" only meets anime_style_v2's minor tag "long hair".
    assert "anime_style_v2.safetensors" not in names(auto("red hair", loras, "sd15"))


def test_a_secondary_tag_pulls_a_lora_in_less_than_a_lora_about_it() -> None:
    portrait = LoraInfo("portrait_master_xl.safetensors", "sdxl", tags=("portrait", "face"),
                        trigger_words=("portrait master",), tag_shares=(0.7, 0.3))
    grain = LoraInfo("film_grain_xl.safetensors", "sdxl", tags=("film grain", "portrait"),
                     trigger_words=("film grain",), tag_shares=(0.8, 0.2))
    chosen = auto("a cat portrait", [grain, portrait], "sdxl")
    assert names(chosen) == ["portrait_master_xl.safetensors"]  # one rare tag hit is not enough
    liked = auto("a cat portrait", [grain, portrait], "sdxl", preference={"film_grain_xl.safetensors": 0.9})
    assert names(liked) == ["portrait_master_xl.safetensors", "film_grain_xl.safetensors"]
    assert liked[0].strength > liked[1].strength and liked[1].trigger_word == "film grain"  # learning says liked


def test_a_weak_match_adds_no_trigger_and_is_not_central_unless_liked() -> None:
    grain = LoraInfo("film_grain_xl.safetensors", "sdxl", tags=("film grain", "portrait", "cat"),
                     trigger_words=("film grain",), tag_shares=(0.5, 0.18, 0.18))
    weak = auto("a cat portrait", [grain], "sdxl")[0]  # two rare tags together pass the floor
    assert weak.trigger_word is None and not weak.central
    assert apply_triggers("a cat portrait", [weak]) == "a cat portrait"
    liked = auto("a cat portrait", [grain], "sdxl", preference={"film_grain_xl.safetensors": 0.8})[0]
    assert liked.trigger_word == "film grain" and liked.central
    central = auto("film grain portrait", [grain], "sdxl")[0]
    assert central.central and central.trigger_word is None  # the prompt already holds it


def test_more_matching_keywords_raise_relevance(loras: list[LoraInfo]) -> None:
    one = auto("cyberpunk", loras, "sdxl")[0]
    three = auto("cyberpunk city, neon lights, night", loras, "sdxl")[0]
    assert 0 < one.relevance < three.relevance <= 1


@pytest.mark.parametrize(
    ("prompt", "family", "forbidden"),
    [
        ("cyberpunk neon, cyberpunk city, neon lights", "sd15", "cyberpunk_neon_xl.safetensors"),
        ("detail tweaker, intricate", "sd15", "xl/detail_tweaker_xl.safetensors"),
        ("anime style, anime girl, long hair", "sdxl", "anime_style_v2.safetensors"),
        ("fantasy landscape, castle, mountains", "sdxl", "fantasy_landscape.safetensors"),
    ],
)
def test_never_a_lora_of_another_base_model(
    loras: list[LoraInfo], prompt: str, family: str, forbidden: str
) -> None:
    preference = {forbidden: 1.0}
    assert forbidden not in names(auto(prompt, loras, family, preference=preference))


def test_sd2_lora_fits_nothing() -> None:
    sd2 = lora_info_from_metadata("anime_sd2.safetensors", {"ss_base_model_version": "sd_v2"})
    assert auto("anime", [sd2], "sd15") == [] and auto("anime", [sd2], "sdxl") == []


def test_unknown_base_only_on_a_name_match_and_flagged(loras: list[LoraInfo]) -> None:
    chosen = auto("girl with braided hair", loras, "sd15")
    hair = next(choice for choice in chosen if choice.name == "detailed_hair.safetensors")
    assert hair.flagged and hair.reason and hair.strength == 0.5
    tagged_only = LoraInfo("mystery.safetensors", None, tags=("hair",), tag_shares=(1.0,))
    assert auto("hair", [tagged_only], "sd15") == []


def test_add_detail_without_metadata_is_not_auto_applied(loras: list[LoraInfo]) -> None:
    # "detail" is a quality word, never a keyword, so add_detail has no name match.
    chosen = auto("highly detailed portrait, intricate details, masterpiece", loras, "sd15")
    assert "add_detail.safetensors" not in names(chosen)


def test_unknown_base_with_another_family_in_its_name_is_refused() -> None:
    grain_xl = LoraInfo("xl/film_grain_xl.safetensors", None)
    assert auto("film grain", [grain_xl], "sd15") == []
    allowed = auto("film grain", [grain_xl], "sdxl")
    assert names(allowed) == ["xl/film_grain_xl.safetensors"] and allowed[0].flagged


def test_top_k_best_first() -> None:
    many = [LoraInfo(f"neon_{word}.safetensors", "sd15") for word in ("a", "b", "c", "d")]
    many.append(LoraInfo("neon_city_glow.safetensors", "sd15"))
    chosen = auto("neon city glow", many, "sd15")
    assert len(chosen) == 3 and chosen[0].name == "neon_city_glow.safetensors"
    assert len(auto("neon", many, "sd15", top_k=1)) == 1


def test_preference_lifts_a_lora_users_keep_selecting() -> None:
    by_name_match = LoraInfo("anime_lines.safetensors", "sd15")
    liked = LoraInfo("soft_cel.safetensors", "sd15", tags=("anime",), tag_shares=(1.0,))
    without = auto("anime", [by_name_match, liked], "sd15")
    assert names(without)[0] == "anime_lines.safetensors"
    preference = {"soft_cel.safetensors": 0.95, "anime_lines.safetensors": 0.2}
    assert names(auto("anime", [by_name_match, liked], "sd15", preference=preference))[0] == (
        "soft_cel.safetensors"
    )


def test_preference_alone_can_bring_a_lora_but_not_a_disliked_one() -> None:
    unrelated = LoraInfo("grainy.safetensors", "sd15")
    assert names(auto("portrait", [unrelated], "sd15", preference={"grainy.safetensors": 0.9}))
    assert auto("portrait", [unrelated], "sd15", preference={"grainy.safetensors": 0.3}) == []


def test_strength_mapping() -> None:
    assert strength_for(0.0) == 0.5 and strength_for(1.0) == 0.8 and strength_for(0.5) == 0.65
    assert strength_for(2.0) == 0.8 and strength_for(0.9, flagged=True) == 0.5


def test_strength_rises_with_relevance(loras: list[LoraInfo]) -> None:
    weak = auto("castle, mountains", loras, "sd15")[0]
    strong = auto("fantasy landscape, castle, mountains, dramatic sky", loras, "sd15")[0]
    assert 0.5 <= weak.strength < strong.strength <= 0.8


# --- triggers --------------------------------------------------------------------------------


def test_trigger_word_only_when_the_prompt_lacks_it(loras: list[LoraInfo]) -> None:
    assert auto("anime girl", loras, "sd15")[0].trigger_word is None
    lacking = auto("castle on a hill", loras, "sd15")[0]
    assert lacking.trigger_word == "fantasy landscape"


def test_apply_triggers_adds_each_once_case_insensitive() -> None:
    choices = [
        LoraChoice("a", 0.7, 0.8, trigger_word="Fantasy Landscape"),
        LoraChoice("b", 0.7, 0.8, trigger_word="inkpunk"),
        LoraChoice("c", 0.7, 0.8, trigger_word="inkpunk"),
        LoraChoice("d", 0.7, 0.8),
    ]
    result = apply_triggers("a castle, (INKPUNK:1.2)", choices)
    assert result == "a castle, (INKPUNK:1.2), Fantasy Landscape"
    assert apply_triggers(result, choices) == result
    assert apply_triggers("", choices[:2]) == "Fantasy Landscape, inkpunk"


def test_trigger_inside_another_word_still_gets_added() -> None:
    choice = LoraChoice("a", 0.7, 0.8, trigger_word="ink")
    assert apply_triggers("inkpunk city", [choice]) == "inkpunk city, ink"


# --- explicit tags ---------------------------------------------------------------------------


def test_explicit_tag_is_resolved_and_honoured(loras: list[LoraInfo]) -> None:
    [choice] = explicit_choices([ExplicitLora("anime_style_v2", 0.35)], loras, "sd15")
    assert choice.name == "anime_style_v2.safetensors" and choice.strength == 0.35
    assert choice.explicit and not choice.flagged


def test_explicit_mismatched_base_is_kept_flagged_with_reason(loras: list[LoraInfo]) -> None:
    [choice] = explicit_choices([ExplicitLora("cyberpunk_neon_xl", 0.9)], loras, "sd15")
    assert choice.name == "cyberpunk_neon_xl.safetensors" and choice.strength == 0.9
    assert choice.flagged and "sdxl" in (choice.reason or "")


def test_explicit_unknown_file_is_kept_flagged(loras: list[LoraInfo]) -> None:
    [choice] = explicit_choices([ExplicitLora("nowhere", 0.6)], loras, "sd15")
    assert choice.name == "nowhere" and choice.flagged and "not on the servers" in choice.reason


def test_explicit_tags_take_slots_before_auto(loras: list[LoraInfo]) -> None:
    parsed = parse_prompt("castle, mountains, anime girl, <lora:detail_tweaker_xl:0.4>")
    chosen = choose_loras(parsed, loras, "sd15", top_k=2)
    assert names(chosen)[0] == "xl/detail_tweaker_xl.safetensors" and chosen[0].flagged
    assert len(chosen) == 2 and not chosen[1].explicit
    assert names(choose_loras(parsed, loras, "sd15", auto=False)) == [
        "xl/detail_tweaker_xl.safetensors"
    ]


def test_explicit_lora_is_not_chosen_twice(loras: list[LoraInfo]) -> None:
    parsed = parse_prompt("anime girl <lora:anime_style_v2:0.3>")
    chosen = choose_loras(parsed, loras, "sd15")
    assert names(chosen).count("anime_style_v2.safetensors") == 1
    assert chosen[0].strength == 0.3


# --- Explore variation -----------------------------------------------------------------------


def choice(name: str, *, explicit: bool = False) -> LoraChoice:
    return LoraChoice(name, 0.7, 0.8, explicit=explicit)


def sets(groups: list[tuple[LoraChoice, ...]]) -> list[list[str]]:
    return [[c.name for c in group] for group in groups]


def test_vary_two_loras_over_three_groups() -> None:
    assert sets(vary_loras([choice("A"), choice("B")], 3)) == [["A"], ["B"], ["A", "B"]]


def test_vary_one_lora_keeps_a_baseline_and_cycles() -> None:
    assert sets(vary_loras([choice("A")], 4)) == [["A"], [], ["A"], []]


def test_vary_three_loras_then_all_then_none() -> None:
    abc = [choice("A"), choice("B"), choice("C")]
    assert sets(vary_loras(abc, 6)) == [["A"], ["B"], ["C"], ["A", "B", "C"], [], ["A"]]


def test_vary_keeps_explicit_everywhere() -> None:
    groups = vary_loras([choice("X", explicit=True), choice("A"), choice("B")], 4)
    assert sets(groups) == [["X", "A"], ["X", "B"], ["X", "A", "B"], ["X"]]
    assert sets(vary_loras([choice("X", explicit=True)], 2)) == [["X"], ["X"]]


def test_vary_edge_cases_are_deterministic() -> None:
    assert vary_loras([choice("A")], 0) == []
    assert sets(vary_loras([], 2)) == [[], []]
    pair = [choice("A"), choice("B")]
    assert vary_loras(pair, 5) == vary_loras(pair, 5)
