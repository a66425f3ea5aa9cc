"""The Compare tab: images of the batch open on the Generate tab side by side, at full size (from
the app's own cached route `/api/images/{id}`).

* **Same seed across checkpoints** — an Explore batch gives chunk *k* of every checkpoint the same
  seed (`draftgrid.planning`), so (seed, batch index) names the same noise under each checkpoint and
  LoRA set: one pick shows them all;
* **Chosen images** — any 2 to 4 images of the batch.

Clicking (or tapping) an image there selects it through the facade, a selection like a click in
the grid: it teaches the learning the same way.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

import gradio as gr

from draftgrid.errors import ServiceError
from draftgrid.schemas import FeedbackRequest
from draftgrid.ui_common import error_html, image_url, user_of
from draftgrid.views import BatchView, ImageView, caption, short_checkpoint

if TYPE_CHECKING:
    from draftgrid.ui import DraftGridUI

MIN_CHOSEN, MAX_CHOSEN = 2, 4


def comparable(view: BatchView) -> list[ImageView]:
    """The batch's images that can be shown: done, file kept, in grid order."""
    return sorted((v for v in view.images if v.status == "done" and not v.pruned),
                  key=lambda v: (v.record.seed, v.record.batch_index, v.record.checkpoint, v.record.image_id))


def same_seed_groups(view: BatchView) -> dict[str, list[ImageView]]:
    """(seed, batch index) → its images, where at least two checkpoints or LoRA sets made it."""
    groups: dict[str, list[ImageView]] = {}
    for v in comparable(view):
        groups.setdefault(f"{v.record.seed}#{v.record.batch_index}", []).append(v)
    return {key: images for key, images in groups.items()
            if len({(v.record.checkpoint, v.record.loras) for v in images}) >= 2}


def short_label(v: ImageView) -> str:
    return f"{short_checkpoint(v.record.checkpoint)} · seed {v.record.seed}#{v.record.batch_index}"


class ComparePanel:
    """The tab and its handlers, over the batch in the Generate tab's state."""

    def __init__(self, ui: DraftGridUI) -> None:
        self.ui = ui
        self.service = ui.service

    def choices(self, batch_id: str | None, request: gr.Request) -> tuple[Any, Any, str]:
        """The same-seed groups and the images to choose from, of the open batch."""
        if not batch_id:
            return (gr.update(choices=[], value=None), gr.update(choices=[], value=[]),
                    "<span id='dg-compare-note'>Generate or open a batch first.</span>")
        view = self.service.batch_view(user_of(request), batch_id)
        groups = same_seed_groups(view)
        seeds = [(f"seed {key} · {len(images)} images", key) for key, images in groups.items()]
        images = [(caption(v), v.record.image_id) for v in comparable(view)]
        note = (f"<span id='dg-compare-note'>Batch {batch_id[:6]}: {len(groups)} seeds made by several "
                f"checkpoints, {len(images)} images.</span>")
        return gr.update(choices=seeds, value=None), gr.update(choices=images, value=[]), note

    def same_seed(self, batch_id: str | None, key: str | None, request: gr.Request) -> tuple[Any, Any, str]:
        if not batch_id or not key:
            return gr.skip(), gr.skip(), ""
        view = self.service.batch_view(user_of(request), batch_id)
        images = same_seed_groups(view).get(key, [])
        return self._board(images, request)

    def chosen(self, batch_id: str | None, image_ids: list[str] | None, request: gr.Request) -> tuple[Any, Any, str]:
        ids = list(image_ids or [])
        if not batch_id or not MIN_CHOSEN <= len(ids) <= MAX_CHOSEN:
            return gr.skip(), gr.skip(), error_html(f"choose {MIN_CHOSEN} to {MAX_CHOSEN} images to compare "
                                                    f"({len(ids)} chosen)")
        by_id = {v.record.image_id: v for v in comparable(self.service.batch_view(user_of(request), batch_id))}
        return self._board([by_id[i] for i in ids if i in by_id], request)

    def pick(self, batch_id: str | None, shown: list[str] | None, evt: gr.SelectData,
             request: gr.Request) -> tuple[Any, str]:
        """The clicked image is selected (one review, as in the grid); the board shows the mark."""
        if not batch_id or not shown or not 0 <= int(evt.index) < len(shown):
            return gr.skip(), ""
        user, image_id = user_of(request), shown[int(evt.index)]
        try:
            self.service.feedback(user, FeedbackRequest(batch_id=batch_id, selected=[image_id]))
        except ServiceError as exc:
            return gr.skip(), error_html(str(exc))
        by_id = {v.record.image_id: v for v in self.service.batch_view(user, batch_id).images}
        board, _, _ = self._board([by_id[i] for i in shown if i in by_id], request)
        return board, (f"<span id='dg-compare-picked' data-image='{html.escape(image_id)}'>Selected "
                       f"{html.escape(short_label(by_id[image_id]))}</span>")

    @staticmethod
    def _board(images: list[ImageView], request: gr.Request) -> tuple[Any, list[str], str]:
        items = [(image_url(request, v.record.image_id), caption(v)) for v in images]
        board = gr.update(value=items, columns=max(1, min(len(items), MAX_CHOSEN)))
        return board, [v.record.image_id for v in images], "<span id='dg-compare-note'>Click one to select it.</span>"

    def build(self, batch_state: gr.State, settle: dict[str, Any]) -> gr.Tab:
        """The tab; `settle` re-renders the Generate grid after a pick here."""
        with gr.Tab("Compare", id="compare") as tab:
            seeds = gr.Dropdown([], label="Same seed across checkpoints", elem_id="dg-compare-seed")
            with gr.Row(equal_height=True):  # the images' long labels get the whole width on a phone
                chosen = gr.CheckboxGroup([], label=f"Or choose {MIN_CHOSEN}–{MAX_CHOSEN} images",
                                          elem_id="dg-compare-chosen", scale=5, min_width=300)
                show = gr.Button("Compare chosen", elem_id="dg-compare-show", min_width=100)
            note = gr.HTML(elem_id="dg-compare-status")
            board = gr.Gallery(columns=2, allow_preview=False, object_fit="contain", height="auto",
                               interactive=False, show_label=False, elem_id="dg-compare-board")
            shown = gr.State([])
        quick = dict(show_progress="hidden", concurrency_limit=None)
        tab.select(self.choices, inputs=[batch_state], outputs=[seeds, chosen, note], **quick)
        seeds.input(self.same_seed, inputs=[batch_state, seeds], outputs=[board, shown, note], **quick)
        show.click(self.chosen, inputs=[batch_state, chosen], outputs=[board, shown, note], **quick)
        board.select(self.pick, inputs=[batch_state, shown], outputs=[board, note], trigger_mode="multiple",
                     **quick).then(**settle)
        return tab
