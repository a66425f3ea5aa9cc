"""The gallery component the UI streams to, with its API schema worked out once per process.

Gradio 6.31 turns every `gr.update(...)` a handler returns into a new component instance, and
describes it twice (`SessionState._update_config` → `config_for_block` → `api_info`), each time
asking pydantic for the JSON schema of the gallery's data model: ~2 ms of pure Python, holding the
GIL, per streamed gallery update (22 % of the server loop's GIL time in the load bench's profile,
docs/RELIABILITY.md). The instance caches it, but every update is a new instance. The schema is
the data model's — the same for every gallery — so it is computed once for the class.

Gradio writes a typing stub (`ui_gallery.pyi`) next to every component subclass when the class is
defined; git ignores it.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gradio as gr


class Gallery(gr.Gallery):  # named `Gallery`: Gradio picks the front-end component by class name
    """`gr.Gallery`, whose `api_info` is shared by every instance."""

    _shared_api_info: ClassVar[dict[str, Any] | None] = None

    def api_info(self) -> dict[str, Any]:
        if Gallery._shared_api_info is None:
            Gallery._shared_api_info = super().api_info()
        return Gallery._shared_api_info
