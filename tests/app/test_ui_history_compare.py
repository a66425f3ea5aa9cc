"""The pure parts of the History and Compare tabs: the filter fields as a query, the page line, and
which images share a seed across checkpoints."""

from __future__ import annotations

from datetime import datetime

import pytest
from pydantic import ValidationError

from draftgrid.ui_compare import comparable, same_seed_groups
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
           loras: tuple[tuple[str, float], ...] = ()) -> ImageView:
    record = ImageRecord(image_id=image_id, batch_id="b", user_id="u", checkpoint=checkpoint, loras=loras, seed=seed,
                         batch_index=index, width=512, height=512, steps=12, cfg=7.0, sampler_name="euler",
                         scheduler="normal", status=status)
    return ImageView(record, status, "none")


def test_same_seed_groups_need_two_checkpoints_or_lora_sets_and_skip_unfinished_images() -> None:
    batch = BatchRecord(batch_id="b", user_id="u", session_id="s", prompt="a fox", negative_prompt="", keywords=("fox",),
                        tier="draft", family="sd15", explore_mode=True, auto_lora=False, strategy="explore",
                        recommended="a", confidence=0.1, count=7)
    images = (_image("1", "a", 5, 0), _image("2", "b", 5, 0), _image("3", "a", 5, 1), _image("4", "c", 5, 1, "failed"),
              _image("5", "a", 6, 0), _image("6", "a", 6, 0, loras=(("style", 0.8),)), _image("7", "a", 7, 0))
    view = BatchView(batch, "partial", images, None)
    groups = same_seed_groups(view)
    assert {key: [v.record.image_id for v in group] for key, group in groups.items()} == {
        "5#0": ["1", "2"], "6#0": ["5", "6"]}
    assert "4" not in [v.record.image_id for v in comparable(view)]
