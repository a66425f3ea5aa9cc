"""Two actions on the batch open on the Generate tab, next to its grid:

* **Retry failed** — makes the batch's failed images again with their seeds and settings, as a new
  batch streamed into the grid (`DraftGridService.retry_failed`); enabled only while the open batch
  has failed images and has ended;
* **Use this prompt and settings again** — fills the Generate fields (prompt, negative, model
  family, aspect ratio, mode) from the open batch, e.g. one re-opened from the History tab.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import gradio as gr

from draftgrid.errors import ServiceError
from draftgrid.schemas import closest_aspect
from draftgrid.ui_common import error_html, user_of

if TYPE_CHECKING:
    from draftgrid.ui import DraftGridUI


class BatchActions:
    """The buttons (made inside the Generate tab) and their handlers."""

    def __init__(self, ui: DraftGridUI) -> None:
        self.ui = ui
        self.service = ui.service

    def build(self) -> None:
        """The buttons, in the Generate tab's layout; `wire` connects them once its fields exist."""
        with gr.Row(equal_height=True):
            self.retry_btn = gr.Button("Retry failed", elem_id="dg-retry", variant="secondary", interactive=False,
                                       min_width=120)
            self.reuse_btn = gr.Button("Use this prompt and settings again", elem_id="dg-reuse", min_width=200)

    def wire(self, batch_state: gr.State, status: gr.HTML, stream_outputs: list[Any], stream_kw: dict[str, Any],
             fields: list[Any], settle: dict[str, Any]) -> None:
        """`fields`: prompt, negative, family, aspect, mode (what "use again" fills)."""
        self._family = fields[2]
        quick = dict(show_progress="hidden", concurrency_limit=None)
        status.change(self.retry_enabled, inputs=[batch_state], outputs=[self.retry_btn], trigger_mode="always_last",
                      **quick)
        self.retry_btn.click(self.retry, inputs=[batch_state], **stream_kw).then(**settle)
        self.reuse_btn.click(self.reuse, inputs=[batch_state], outputs=fields, **quick)

    def retry_enabled(self, batch_id: str | None, request: gr.Request) -> Any:
        if not batch_id:
            return gr.update(interactive=False)
        try:
            view = self.service.batch_view(user_of(request), batch_id)
        except ServiceError:
            return gr.update(interactive=False)
        ended = view.live is None or view.live.finished
        failed = sum(1 for v in view.images if v.status == "failed")
        return gr.update(interactive=ended and failed > 0, value=f"Retry {failed} failed" if failed else "Retry failed")

    def retry(self, batch_id: str | None, request: gr.Request) -> Iterator[tuple[Any, ...]]:
        user = user_of(request)
        try:
            ticket = self.service.retry_failed(user, batch_id or "")
        except ServiceError as exc:
            yield gr.skip(), gr.skip(), error_html(str(exc)), gr.skip(), None, gr.skip(), gr.skip()
            return
        yield from self.ui._stream(user, ticket)  # the Generate grid streams it like any batch

    def reuse(self, batch_id: str | None, request: gr.Request) -> tuple[Any, ...]:
        if not batch_id:
            return (gr.skip(),) * 5
        view = self.service.batch_view(user_of(request), batch_id)
        b = view.batch
        first = view.images[0].record if view.images else None
        aspect = closest_aspect(first.width, first.height) if first else gr.skip()
        family = b.family if b.family in dict(self._family.choices).values() else gr.skip()
        return b.prompt, b.negative_prompt, family, aspect, "Explore" if b.explore_mode else "Quick"
