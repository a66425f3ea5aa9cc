"""The pure parts of the History and Compare tabs: the filter fields as a query, the page line,
which images share a seed across checkpoints, and what the compare overlay (`c`) shows."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

import pytest
from pydantic import ValidationError

from draftgrid.ui_compare import COMPARE_NOTHING, comparable, compare_html, compare_set, same_seed_groups
from draftgrid.ui_history import PAGE_SIZE, SELECTION, history_query, page_line
from draftgrid.views import BatchView, ImageView
from learning.models import BatchRecord, ImageRecord
from learning.store.history_sql import HistoryPage


def test_the_filter_fields_become_the_rest_query() -> None:
    q = history_query(" fox ", "", "dreamshaper_8.safetensors", "", "draft", SELECTION[1], "2026-01-01", "", 40)
    f = q.to_filter()
    assert (f.prompt, f.keyword, f.checkpoint, f.lora, f.tier, f.selected) == (
        "fox", None, "dreamshaper_8.safetensors", None, "draft", True)
    assert (f.since, f.until, f.limit, f.offset) == (datetime(2026, 1, 1), None, PAGE_SIZE, 40)
    everything = history_query("", "  ", "", "", "any", SELECTION[0], "", "", 0).to_filter()
    assert (everything.prompt, everything.tier, everything.selected) == (None, None, None)
    assert history_query("", "", "", "", "any", SELECTION[2], "", "", 0).to_filter().selected is False
    hearts = history_query("", "", "", "", "any", SELECTION[3], "", "", 0).to_filter()
    assert hearts.favourite is True and hearts.selected is None
    with pytest.raises(ValidationError):
        history_query("", "", "", "", "any", SELECTION[0], "last week", "", 0)


def test_the_page_line_says_the_total_and_the_page() -> None:
    assert "95 images</span> · page 2 of 3" in page_line(HistoryPage((), 95, PAGE_SIZE, PAGE_SIZE))
    assert "0 images</span> · page 1 of 1" in page_line(HistoryPage((), 0, PAGE_SIZE, 0))


def _image(image_id: str, checkpoint: str, seed: int, index: int, status: str = "done",
           loras: tuple[tuple[str, float], ...] = (), state: str = "none") -> ImageView:
    record = ImageRecord(image_id=image_id, batch_id="b", user_id="u", checkpoint=checkpoint, loras=loras, seed=seed,
                         batch_index=index, width=512, height=512, steps=12, cfg=7.0, sampler_name="euler",
                         scheduler="normal", status=status)
    return ImageView(record, status, state)


BATCH = BatchRecord(batch_id="b", user_id="u", session_id="s", prompt="a fox", negative_prompt="", keywords=("fox",),
                    tier="draft", family="sd15", explore_mode=True, auto_lora=False, strategy="explore",
                    recommended="a", confidence=0.1, count=7)


def test_same_seed_groups_need_two_checkpoints_or_lora_sets_and_skip_unfinished_images() -> None:
    batch = BATCH
    images = (_image("1", "a", 5, 0), _image("2", "b", 5, 0), _image("3", "a", 5, 1), _image("4", "c", 5, 1, "failed"),
              _image("5", "a", 6, 0), _image("6", "a", 6, 0, loras=(("style", 0.8),)), _image("7", "a", 7, 0))
    view = BatchView(batch, "partial", images, None)
    groups = same_seed_groups(view)
    assert {key: [v.record.image_id for v in group] for key, group in groups.items()} == {
        "5#0": ["1", "2"], "6#0": ["5", "6"]}
    assert "4" not in [v.record.image_id for v in comparable(view)]


def _grid(selected: str = "", pruned: str = "") -> BatchView:
    """Nine images in grid order: seed 5#0 under checkpoints a–e (ids 1–5), 6#0 under a alone, and
    7#0 under a and b; `selected` / `pruned` name ids."""
    made = [("1", "a", 5), ("2", "b", 5), ("3", "c", 5), ("4", "d", 5), ("5", "e", 5), ("6", "a", 6), ("7", "a", 7),
            ("8", "b", 7), ("9", "c", 8)]
    images = []
    for image_id, checkpoint, seed in made:
        image = _image(image_id, checkpoint, seed, 0, state="selected" if image_id in selected else "none")
        if image_id in pruned:
            image = replace(image, record=replace(image.record, pruned_at=datetime.now(timezone.utc)))
        images.append(image)
    return BatchView(BATCH, "done", tuple(images), None)


def _ids(images: list[ImageView]) -> str:
    return "".join(v.record.image_id for v in images)


def test_compare_takes_the_focused_image_with_the_selection_when_that_makes_two_to_four() -> None:
    assert _ids(compare_set(_grid(selected="6"), "9")) == "69"  # compare two: one selected, the focus on another
    assert _ids(compare_set(_grid(selected="2689"), "8")) == "2689"  # the selection, the focus in it
    assert _ids(compare_set(_grid(selected="26"), "9")) == "269"  # the selection and the focused image


def test_otherwise_compare_takes_the_focused_images_seed_under_other_checkpoints() -> None:
    assert _ids(compare_set(_grid(), "7")) == "78"  # nothing selected
    assert _ids(compare_set(_grid(selected="7"), "7")) == "78"  # only itself selected
    assert _ids(compare_set(_grid(selected="16789"), "8")) == "78"  # five would be too many
    assert _ids(compare_set(_grid(), "4")) == "1245"  # at most four: those after it first, then from the top
    assert _ids(compare_set(_grid(pruned="5"), "4")) == "1234"  # a removed image is not shown
    assert compare_set(_grid(), "6") == [] and compare_set(_grid(), "9") == []  # its seed is nobody else's
    assert compare_set(_grid(selected="2"), "nope") == []  # not an image of the grid


def test_the_compare_overlay_shows_the_panes_with_their_marks_and_a_slider_for_two() -> None:
    view = _grid(selected="8")
    two = compare_html(view, 4, ["7", "8"])
    assert "data-token='4' data-count='2'" in two
    assert "data-pane='0' data-image-id='7' data-state='none'" in two
    assert "data-pane='1' data-image-id='8' data-state='selected'" in two and "2 / 2 · ✓ selected" in two
    assert "class='dg-slider'" in two and "type='range'" in two
    assert two.index("alt='right image'") < two.index("class='dg-slider-left' src='/api/images/7'")  # left on top
    three = compare_html(view, 5, ["1", "2", "3"])
    assert "data-count='3'" in three and "dg-slider" not in three
    gone = compare_html(_grid(pruned="8"), 6, ["7", "8"])  # its other image was removed meanwhile
    assert "data-token='6' data-count='0'" in gone and COMPARE_NOTHING.split(":")[0] in gone
