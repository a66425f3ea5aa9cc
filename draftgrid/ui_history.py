"""The History tab: the user's earlier images, filtered (prompt text, keyword, checkpoint, LoRA,
tier, selected, date range) and paged newest first, as thumbnails served by the app's own cached
route (`/api/images/{id}/thumbnail`). Clicking one re-opens its batch on the Generate tab, to keep
triaging it (its "Use this prompt and settings again" button then fills the fields from it).

The query is `DraftGridService.history`, validated by the same `HistoryQuery` as
`GET /api/history`, so a bad date is the same readable message in both.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import gradio as gr
from pydantic import ValidationError

from draftgrid.schemas import HistoryQuery, readable_errors
from draftgrid.ui_common import SHOW_GENERATE_TAB, error_html, image_url, user_of
from draftgrid.ui_gallery import Gallery
from draftgrid.views import short_checkpoint

if TYPE_CHECKING:
    from draftgrid.ui import DraftGridUI

PAGE_SIZE = 40
TIERS = ("any", "draft", "standard", "quality")
SELECTION = ("all", "selected (favourites too)", "not selected", "♥ favourites")


def history_query(prompt: str, keyword: str, checkpoint: str, lora: str, tier: str, selection: str, since: str,
                  until: str, offset: int) -> HistoryQuery:
    """The filter fields as a validated query; an empty field filters nothing."""
    given = {"prompt": prompt, "keyword": keyword, "checkpoint": checkpoint, "lora": lora, "since": since,
             "until": until}
    fields: dict[str, Any] = {k: v.strip() for k, v in given.items() if v and v.strip()}
    if tier and tier != "any":
        fields["tier"] = tier
    if selection == SELECTION[3]:
        fields["favourite"] = True
    elif selection != SELECTION[0]:
        fields["selected"] = selection == SELECTION[1]
    return HistoryQuery(**fields, limit=PAGE_SIZE, offset=max(0, offset))


def page_line(page: Any) -> str:
    """The total and which page of how many (`page`: the facade's `history` answer)."""
    pages = max(1, math.ceil(page.total / page.limit))
    number = page.offset // page.limit + 1
    return (f"<span id='dg-history-total' data-total='{page.total}'>{page.total} images</span> · "
            f"page {number} of {pages}")


def row_caption(row: Any) -> str:
    mark = "♥ " if row.favourite else "✓ " if row.selected else ""
    prompt = row.prompt if len(row.prompt) <= 40 else row.prompt[:39] + "…"
    return (f"{mark}{short_checkpoint(row.checkpoint)} · seed {row.seed} · {row.tier} · "
            f"{row.created_at:%Y-%m-%d %H:%M} · {prompt}")


class HistoryPanel:
    """The tab and its handlers; a click opens the batch through the Generate tab's `open_batch`."""

    def __init__(self, ui: DraftGridUI) -> None:
        self.ui = ui
        self.service = ui.service

    def search(self, prompt: str, keyword: str, checkpoint: str, lora: str, tier: str, selection: str, since: str,
               until: str, offset: float, request: gr.Request) -> tuple[Any, ...]:
        """(gallery, page line, rows of the page, offset)."""
        try:
            query = history_query(prompt, keyword, checkpoint, lora, tier, selection, since, until, int(offset or 0))
        except ValidationError as exc:
            return gr.skip(), error_html(readable_errors(exc)), gr.skip(), gr.skip()
        page = self.service.history(user_of(request), query.to_filter())
        if page.offset and not page.rows and page.total:  # past the end (fewer results now): the last page
            return self.search(prompt, keyword, checkpoint, lora, tier, selection, since, until,
                               (page.total - 1) // PAGE_SIZE * PAGE_SIZE, request)
        shown = [row for row in page.rows if row.status == "done" and not row.pruned]
        gallery = [(image_url(request, row.image_id, thumbnail=True), row_caption(row)) for row in shown]
        return (gr.update(value=gallery), page_line(page), [(row.image_id, row.batch_id) for row in shown],
                page.offset)

    def open(self, rows: list[tuple[str, str]] | None, evt: gr.SelectData, request: gr.Request) -> tuple[Any, ...]:
        """The clicked image's batch on the Generate tab (the stream outputs of `open_batch`)."""
        if not rows or not 0 <= int(evt.index) < len(rows):
            return (gr.skip(),) * 7
        return self.ui.open_batch(rows[int(evt.index)][1], request)

    def build(self, stream_outputs: list[Any]) -> gr.Tab:
        with gr.Tab("History", id="history") as tab:
            with gr.Row():
                prompt = gr.Textbox(label="Prompt contains", elem_id="dg-history-prompt", min_width=200)
                keyword = gr.Textbox(label="Keyword", elem_id="dg-history-keyword", min_width=120)
                checkpoint = gr.Textbox(label="Checkpoint (file name)", elem_id="dg-history-checkpoint")
                lora = gr.Textbox(label="LoRA (file name)", elem_id="dg-history-lora")
            with gr.Row():
                tier = gr.Dropdown(list(TIERS), value="any", label="Tier", elem_id="dg-history-tier", min_width=100)
                selection = gr.Radio(list(SELECTION), value=SELECTION[0], label="Selection",
                                     elem_id="dg-history-selected")
                since = gr.Textbox(label="From (YYYY-MM-DD)", elem_id="dg-history-since", min_width=120)
                until = gr.Textbox(label="Before (YYYY-MM-DD)", elem_id="dg-history-until", min_width=120)
                search = gr.Button("Search", variant="primary", elem_id="dg-history-search", min_width=80)
            with gr.Row(equal_height=True):
                previous = gr.Button("◀ Newer", elem_id="dg-history-prev", min_width=80)
                line = gr.HTML(elem_id="dg-history-page")
                following = gr.Button("Older ▶", elem_id="dg-history-next", min_width=80)
            gallery = Gallery(label="Click an image to re-open its batch on the Generate tab", columns=6,
                                 allow_preview=False, object_fit="contain", height="auto", interactive=False,
                                 elem_id="dg-history-grid")
            rows = gr.State([])
            offset = gr.Number(0, visible=False, precision=0)
            first_page = gr.Number(0, visible=False, precision=0)
        filters = [prompt, keyword, checkpoint, lora, tier, selection, since, until]
        out = dict(outputs=[gallery, line, rows, offset], concurrency_limit=None, show_progress="hidden")
        for event in (search.click, tab.select, *(box.submit for box in (prompt, keyword, checkpoint, lora))):
            event(self.search, inputs=[*filters, first_page], **out)
        tier.input(self.search, inputs=[*filters, first_page], **out)
        selection.input(self.search, inputs=[*filters, first_page], **out)
        previous.click(lambda o: max(0, int(o or 0) - PAGE_SIZE), inputs=[offset], outputs=[offset],
                       show_progress="hidden").then(self.search, inputs=[*filters, offset], **out)
        following.click(lambda o: int(o or 0) + PAGE_SIZE, inputs=[offset], outputs=[offset],
                        show_progress="hidden").then(self.search, inputs=[*filters, offset], **out)
        gallery.select(self.open, inputs=[rows], outputs=stream_outputs, show_progress="hidden",
                       concurrency_limit=None).then(None, js=SHOW_GENERATE_TAB)
        return tab

