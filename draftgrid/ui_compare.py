"""The Compare tab: images of the batch open on the Generate tab side by side, at full size (from
the app's own cached route `/api/images/{id}`).

* **Same seed across checkpoints** — an Explore batch gives chunk *k* of every checkpoint the same
  seed (`draftgrid.planning`), so (seed, batch index) names the same noise under each checkpoint and
  LoRA set: one pick shows them all;
* **Chosen images** — any 2 to 4 images of the batch.

Clicking (or tapping) an image there selects it through the facade, a selection like a click in
the grid: it teaches the learning the same way.

The keyboard's (and the touch bar's) way in is the Generate tab's compare overlay, opened with `c`:
`compare_set` says which images it shows and `compare_html` draws them (panes side by side, and for
two images a slider, one over the other); `assets/triage.js` moves between the panes and sends the
picks down the triage queue (`draftgrid/ui_triage.py`).
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

import gradio as gr
from pydantic import BaseModel

from draftgrid.errors import ServiceError
from draftgrid.schemas import FeedbackRequest
from draftgrid.ui_common import error_html, image_url, user_of
from draftgrid.ui_gallery import Gallery
from draftgrid.ui_viewer import viewer_bar
from draftgrid.views import BatchView, ImageView, caption, short_checkpoint

if TYPE_CHECKING:
    from draftgrid.ui import DraftGridUI

MIN_CHOSEN, MAX_CHOSEN = 2, 4


def comparable(view: BatchView) -> list[ImageView]:
    """The batch's images that can be shown: done, file kept, in grid order."""
    return sorted((v for v in view.images if v.status == "done" and not v.pruned),
                  key=lambda v: (v.record.seed, v.record.batch_index, v.record.checkpoint, v.record.image_id))


def seed_key(v: ImageView) -> str:
    """The noise an image started from: its seed and batch index ("123#0")."""
    return f"{v.record.seed}#{v.record.batch_index}"


def same_seed_groups(view: BatchView) -> dict[str, list[ImageView]]:
    """(seed, batch index) → its images, where at least two checkpoints or LoRA sets made it."""
    groups: dict[str, list[ImageView]] = {}
    for v in comparable(view):
        groups.setdefault(seed_key(v), []).append(v)
    return {key: images for key, images in groups.items()
            if len({(v.record.checkpoint, v.record.loras) for v in images}) >= 2}


def short_label(v: ImageView) -> str:
    return f"{short_checkpoint(v.record.checkpoint)} · seed {v.record.seed}#{v.record.batch_index}"


def compare_set(view: BatchView, focused: str | None) -> list[ImageView]:
    """What `c` compares, in grid order: the focused image with the selected ones when that makes 2
    to 4 images; otherwise the focused image with the images of its seed made by other checkpoints
    or LoRA sets (at most 4 in all: those after it in the grid first, then from the top). Empty
    when neither gives two."""
    grid = [v for v in view.images if v.status == "done" and not v.pruned]
    chosen = {v.record.image_id for v in grid if v.state == "selected" or v.record.image_id == focused}
    if focused not in {v.record.image_id for v in grid}:
        return []
    if not MIN_CHOSEN <= len(chosen) <= MAX_CHOSEN:
        me = next(v for v in grid if v.record.image_id == focused)
        group = {v.record.image_id for v in same_seed_groups(view).get(seed_key(me), [])}
        at = grid.index(me)
        nearest = [v.record.image_id for v in grid[at + 1:] + grid[:at] if v.record.image_id in group]
        chosen = {focused, *nearest[:MAX_CHOSEN - 1]} if group else set()
    return [v for v in grid if v.record.image_id in chosen]


class CompareRequest(BaseModel):
    """The compare overlay the page shows: `token` names one opening of it; `ids` are its panes once
    the page has them (None: choose them with `compare_set` around `around`)."""

    token: int
    around: str | None = None
    ids: list[str] | None = None


# the overlay's buttons: (command for triage.js, label); the commands are the keyboard's
COMPARE_BUTTONS = (("left", "◀ previous"), ("toggle", "✓ pick"), ("reject", "✗ reject"),
                   ("favourite", "♥ favourite"), ("slider", "⇔ slider"), ("right", "next ▶"),
                   ("escape", "close ✕"))
COMPARE_NOTHING = ("Nothing to compare: select 1 to 3 other images, or focus an image whose seed other "
                   "checkpoints made too.")

COMPARE_CSS = """
#dg-compare .dg-panes { display: grid; gap: 8px; grid-template-columns: repeat(var(--dg-panes, 2), minmax(0, 1fr)); }
@media (max-width: 640px) { #dg-compare .dg-panes { grid-template-columns: repeat(2, minmax(0, 1fr)); } }
#dg-compare .dg-pane { margin: 0; padding: 4px; border: 3px solid transparent; border-radius: 8px; cursor: pointer; }
#dg-compare .dg-pane img { width: 100%; max-height: 80vh; object-fit: contain; touch-action: pan-y; }
#dg-compare .dg-pane figcaption, #dg-compare .dg-slider-labels { font-size: 13px; line-height: 1.3; }
#dg-compare [data-pane].dg-focus { border-color: #60a5fa; outline: 2px solid #60a5fa; }
#dg-compare .dg-pane[data-state=selected] figcaption { font-weight: 700; }
#dg-compare.dg-waiting #dg-compare-body { visibility: hidden; }
#dg-compare .dg-slider { display: none; }
#dg-compare.dg-slider-on .dg-slider { display: block; }
#dg-compare.dg-slider-on .dg-panes { display: none; }
#dg-compare.dg-slider-on .dg-slider { width: fit-content; max-width: 100%; margin: 0 auto; }
#dg-compare .dg-slider-stack { position: relative; }
#dg-compare .dg-slider-stack img { display: block; max-width: 100%; max-height: 78vh; }
#dg-compare .dg-slider-stack img.dg-slider-left { position: absolute; inset: 0; width: 100%; height: 100%; }
#dg-compare .dg-slider-handle { position: absolute; top: 0; bottom: 0; width: 3px; margin-left: -1px;
  background: #f9fafb; box-shadow: 0 0 4px #000; pointer-events: none; }
#dg-compare .dg-split, #dg-compare .dg-slider-labels { width: 0; min-width: 100%; }  /* as wide as the image */
#dg-compare .dg-split { display: block; height: 32px; margin: 0; }
#dg-compare .dg-slider-labels { display: flex; justify-content: space-between; gap: 8px; }
#dg-compare .dg-slider-labels span { min-width: 0; overflow-wrap: anywhere; padding: 2px 6px;
  border: 2px solid transparent; border-radius: 6px; cursor: pointer; }
"""


def compare_bar() -> str:
    return viewer_bar(COMPARE_BUTTONS)


def _pane(position: int, count: int, v: ImageView) -> str:
    r = v.record
    return (f"<figure class='dg-pane' data-pane='{position}' data-image-id='{r.image_id}' data-state='{v.state}' "
            f"data-favourite='{str(v.favourite).lower()}'><img src='/api/images/{r.image_id}' "
            f"alt='pane {position + 1}'><figcaption>{position + 1} / {count} · {html.escape(caption(v))}"
            "</figcaption></figure>")


def _slider(left: ImageView, right: ImageView) -> str:
    """Two images one over the other: the left one shows up to the handle (triage.js sets the
    clip and the handle from the range input's position)."""
    return ("<div class='dg-slider'><div class='dg-slider-stack'>"
            f"<img src='/api/images/{right.record.image_id}' alt='right image'>"
            f"<img class='dg-slider-left' src='/api/images/{left.record.image_id}' alt='left image'>"
            "<div class='dg-slider-handle'></div></div>"
            "<input type='range' class='dg-split' min='0' max='100' step='1' aria-label='slider position'>"
            f"<div class='dg-slider-labels'><span data-pane='0'>◀ {html.escape(caption(left))}</span>"
            f"<span data-pane='1'>{html.escape(caption(right))} ▶</span></div></div>")


def compare_html(view: BatchView, token: int, ids: list[str]) -> str:
    """The overlay's body for its opening `token`: the images `ids` (those still shown) as panes,
    each with its mark, and a slider for two."""
    by_id = {v.record.image_id: v for v in comparable(view)}
    images = [by_id[i] for i in ids if i in by_id]
    panes = "".join(_pane(k, len(images), v) for k, v in enumerate(images))
    if len(images) < MIN_CHOSEN:
        return compare_note(token, COMPARE_NOTHING)
    body = f"<div class='dg-panes' style='--dg-panes: {len(images)}'>{panes}</div>" + (
        _slider(*images) if len(images) == 2 else "")
    return f"<div class='dg-compare' data-token='{token}' data-count='{len(images)}'>{body}</div>"


def compare_note(token: int, message: str) -> str:
    """The overlay's body when it has nothing to show for its opening `token` (Esc closes it)."""
    return (f"<div class='dg-compare' data-token='{token}' data-count='0'>"
            f"<div class='dg-mark' id='dg-compare-note-text'>{html.escape(message)}</div></div>")


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
            board = Gallery(columns=2, allow_preview=False, object_fit="contain", height="auto",
                               interactive=False, show_label=False, elem_id="dg-compare-board")
            shown = gr.State([])
        quick = dict(show_progress="hidden", concurrency_limit=None)
        tab.select(self.choices, inputs=[batch_state], outputs=[seeds, chosen, note], **quick)
        seeds.input(self.same_seed, inputs=[batch_state, seeds], outputs=[board, shown, note], **quick)
        show.click(self.chosen, inputs=[batch_state, chosen], outputs=[board, shown, note], **quick)
        board.select(self.pick, inputs=[batch_state, shown], outputs=[board, note], trigger_mode="multiple",
                     **quick).then(**settle)
        return tab
