"""Keyboard and touch triage of the Generate tab's grid, and the viewer it opens (issue 13).

The path of a key press: `assets/triage.js` turns it into a command; a move or the viewer
opening stays in the page, a mark (toggle, reject, favourite, select all, clear) joins the page's
queue of actions. One send at a time carries the whole queue down (the send's `js=` takes it as
its input, the `.then`/`.failure` after it sends what queued meanwhile), so no press is dropped
and they apply in the order they were made. `apply` hands each action to the facade — a toggle
is the very `DraftGridService.toggle` a click makes — and answers with the grid, the selection
line and the viewer as the server has them. Refine, Generate and Stop are clicks on their
buttons, made once the queue is empty, so a refine sees every mark made before it.

`c` opens the compare overlay around the focused (or viewed) image: the next answer carries its
panes (`ui_compare.compare_set`, chosen after the queued marks before it are applied), and the
page holds the keys pressed meanwhile and runs them, in order, once the panes are there. A pick
in it is a selection (`pick`), never an unselect.
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import gradio as gr
from pydantic import BaseModel, ValidationError

from draftgrid.errors import ServiceError
from draftgrid.schemas import FeedbackRequest, readable_errors
from draftgrid.service import DraftGridService
from draftgrid.ui_common import error_html, user_of
from draftgrid.ui_compare import (COMPARE_CSS, CompareRequest, compare_bar, compare_html, compare_note,
                                  compare_set)
from draftgrid.ui_viewer import VIEWER_CSS, viewer_bar, viewer_html
from draftgrid.views import BatchView

log = logging.getLogger(__name__)

TRIAGE_JS = Path(__file__).resolve().parents[1] / "assets" / "triage.js"

# the one list of shortcuts: keys (KeyboardEvent.key values), the command triage.js runs, what it does
SHORTCUTS: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("ArrowLeft", "h"), "left", "focus the previous image (in the viewer: the previous image; in compare: "
                                 "the pane on the left)"),
    (("ArrowRight", "l"), "right", "focus the next image (in the viewer: the next image; in compare: the "
                                   "pane on the right)"),
    (("ArrowUp", "k"), "up", "focus the image above"),
    (("ArrowDown", "j"), "down", "focus the image below"),
    ((" ", "Enter"), "toggle", "select / unselect the focused image (in compare: pick the focused pane, "
                               "which selects it)"),
    (("x",), "reject", "reject the focused image"),
    (("f",), "favourite", "favourite / unfavourite the focused image"),
    (("a",), "select_all", "select every image"),
    (("A",), "clear", "clear the selection (Shift+A)"),
    (("o", "v"), "open", "open the focused image full size"),
    (("c",), "compare", "compare the focused image with the selected ones (2–4 in all), else with the "
                        "images of its seed from other checkpoints"),
    (("s",), "slider", "in compare, two images: one over the other under a slider, or side by side again"),
    (("[",), "split_left", "in the slider: move the handle left"),
    (("]",), "split_right", "in the slider: move the handle right"),
    (("r",), "refine", "refine the selection"),
    (("g",), "generate", "generate (Ctrl+Enter works in the prompt too)"),
    (("Escape",), "escape", "close the viewer, compare or this sheet, else stop the running batch"),
    (("?",), "help", "show / hide this sheet"),
)
KEY_NAMES = {" ": "Space", "ArrowLeft": "←", "ArrowRight": "→", "ArrowUp": "↑", "ArrowDown": "↓",
             "A": "Shift+A", "Escape": "Esc"}

TRIAGE_CSS = VIEWER_CSS + COMPARE_CSS + """
#dg-grid button.thumbnail-item.dg-focus { outline: 4px solid #2563eb !important; outline-offset: 2px; z-index: 2; }
#dg-grid .caption-label { white-space: normal !important; overflow: visible !important; text-overflow: clip !important;
  font-size: 11px; line-height: 1.25; }
#dg-keys-send { display: none !important; }
#dg-help { display: none; }
#dg-help.dg-open { display: block; position: fixed; right: 16px; top: 16px; z-index: 1001; background: #fff;
  width: max-content; max-width: calc(100vw - 32px); max-height: calc(100vh - 32px); overflow: auto;
  color: #111827; border: 1px solid #d1d5db; border-radius: 8px; padding: 12px 16px;
  box-shadow: 0 8px 24px rgba(0,0,0,.2); }
#dg-help kbd { border: 1px solid #9ca3af; border-radius: 4px; padding: 0 5px; font-size: 13px; }
.dg-triage-bar { display: flex; gap: 8px; align-items: center; font-size: 13px; color: #6b7280; }
.dg-triage-bar button { padding: 4px 10px; border: 1px solid #d1d5db; border-radius: 6px; }
"""


class TriageAction(BaseModel):
    """One mark made with a key or a tap."""

    op: Literal["toggle", "pick", "reject", "favourite", "select_all", "clear", "view"]
    image: str | None = None


class TriagePayload(BaseModel):
    """What one send carries: the queued actions in order, the image the viewer shows and the
    compare overlay the page has open."""

    actions: list[TriageAction] = []
    viewing: str | None = None
    compare: CompareRequest | None = None


def shortcut_sheet() -> str:
    rows = "".join(f"<tr><td>{' / '.join(f'<kbd>{html.escape(KEY_NAMES.get(k, k))}</kbd>' for k in keys)}</td>"
                   f"<td>{html.escape(what)}</td></tr>" for keys, _, what in SHORTCUTS)
    return (f"<div><b>Keyboard shortcuts</b> (never while typing in a text box)<table>{rows}</table>"
            "<div>Touch: tap selects; in the viewer swipe left / right, tap the image to select; in compare "
            "swipe left / right between the panes, tap one to pick it, drag the slider.</div></div>")


def triage_bar() -> str:
    return ("<div class='dg-triage-bar'><button type='button' data-dg-cmd='open' id='dg-open-viewer'>⤢ view</button>"
            "<button type='button' data-dg-cmd='compare' id='dg-open-compare'>⇆ compare</button>"
            "<button type='button' data-dg-cmd='help' id='dg-show-keys'>? keys</button>"
            "<span>arrows / hjkl move · Space selects · x rejects · f favourites · o opens · c compares"
            "</span></div>")


def page_js() -> str:
    """triage.js with the key map filled in (Gradio runs it once when the page loads)."""
    keymap = {key: command for keys, command, _ in SHORTCUTS for key in keys}
    return TRIAGE_JS.read_text().replace("__DG_KEYMAP__", json.dumps(keymap))


def _target(view: BatchView, image_id: str | None) -> int | None:
    """The position of `image_id` among the batch's finished images (the gallery's order)."""
    done = [v.record.image_id for v in view.images if v.status == "done"]
    return done.index(image_id) if image_id in done else None


class TriagePanel:
    """The send path, the viewer and the shortcut sheet; `review` renders (grid, selection line)."""

    def __init__(self, service: DraftGridService, review: Callable[[str, str], tuple[Any, str]]) -> None:
        self.service = service
        self.review = review

    def _act(self, user: str, batch_id: str, action: TriageAction) -> str:
        """Do one action; says what it did, for the log."""
        view = self.service.batch_view(user, batch_id)
        done = [v for v in view.images if v.status == "done"]
        if action.op in ("select_all", "clear"):
            wanted = action.op == "select_all"
            ids = [v.record.image_id for v in done if (v.state == "selected") != wanted]
            if ids:
                self.service.feedback(user, FeedbackRequest(batch_id=batch_id, **{
                    "selected" if wanted else "unselected": ids}))
            return f"{len(ids)} images"
        index = _target(view, action.image)
        if action.op == "view":
            return "nothing to write"
        if index is None:
            return "not a finished image of the shown batch: ignored"
        image = done[index]
        if action.op == "toggle":  # the same facade call as a click on the thumbnail
            self.service.toggle(user, batch_id, index)
        elif action.op == "pick" and image.state != "selected":  # compare's pick selects, as the Compare tab's click
            self.service.feedback(user, FeedbackRequest(batch_id=batch_id, selected=[image.record.image_id]))
        elif action.op == "reject" and image.state != "rejected":
            self.service.feedback(user, FeedbackRequest(batch_id=batch_id, rejected=[image.record.image_id]))
        elif action.op == "favourite":
            self.service.favourite(user, image.record.image_id, not image.favourite)
        return f"image {index + 1}"

    def apply(self, batch_id: str | None, payload: str, request: gr.Request) -> tuple[Any, Any, Any, Any]:
        """Apply the queued actions in order; answers (grid, selection line, viewer, compare). Never
        raises: the page sends what queued meanwhile only after an answer."""
        if not batch_id:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        user = user_of(request)
        problem = ""
        try:
            sent = TriagePayload.model_validate_json(payload or "{}")
        except ValidationError as exc:
            log.warning("triage payload refused: %s", readable_errors(exc))
            return gr.skip(), error_html(readable_errors(exc)), gr.skip(), gr.skip()
        for action in sent.actions:
            try:
                done = self._act(user, batch_id, action)
                log.info("triage %s on %s of batch %s: %s", action.op, action.image or "all", batch_id, done)
            except ServiceError as exc:
                log.info("triage %s on %s refused: %s", action.op, action.image, exc)
                problem = error_html(str(exc))
        try:
            gallery, selection = self.review(user, batch_id)
            view = self.service.batch_view(user, batch_id)
        except ServiceError as exc:  # an open compare shows it too, so the keys it holds are let go
            compare = compare_note(sent.compare.token, str(exc)) if sent.compare else gr.skip()
            return gr.skip(), error_html(str(exc)), gr.skip(), compare
        viewer = viewer_html(view, sent.viewing, self.service.lora_reasons(view)) if sent.viewing else gr.skip()
        compare = self._compare(view, sent.compare) if sent.compare else gr.skip()
        return gallery, selection + problem, viewer, compare

    @staticmethod
    def _compare(view: BatchView, request: CompareRequest) -> str:
        """The compare overlay's body; its panes are chosen once, when it opens."""
        ids = request.ids
        if ids is None:
            ids = [v.record.image_id for v in compare_set(view, request.around)]
            log.info("compare around %s of batch %s: %d images", request.around, view.batch.batch_id, len(ids))
        return compare_html(view, request.token, ids)

    def build(self, batch_state: gr.State, gallery: gr.Gallery, selection_md: gr.HTML) -> None:
        """The hidden send button, the viewer and compare overlays and the shortcut sheet, wired to the
        grid."""
        gr.HTML(triage_bar(), elem_id="dg-triage")
        payload = gr.Textbox(visible=False)
        send = gr.Button(elem_id="dg-keys-send", visible="hidden")
        with gr.Column(elem_id="dg-viewer"):
            gr.HTML(viewer_bar())
            viewer = gr.HTML(elem_id="dg-viewer-body")
        with gr.Column(elem_id="dg-compare"):
            gr.HTML(compare_bar())
            compare = gr.HTML(elem_id="dg-compare-body")
        gr.HTML(shortcut_sheet(), elem_id="dg-help")
        sent = send.click(self.apply, inputs=[batch_state, payload], outputs=[gallery, selection_md, viewer, compare],
                          js="(batch, payload) => [batch, window.dgTriage.take()]", trigger_mode="multiple",
                          show_progress="hidden", concurrency_limit=None, api_visibility="private")
        # exactly one of these follows a send: the next send carries what queued meanwhile
        sent.then(None, js="() => window.dgTriage.done()")
        sent.failure(None, js="() => window.dgTriage.done()")
