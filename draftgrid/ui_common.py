"""What the Gradio UI modules share: who is calling, and how an error shows."""

from __future__ import annotations

import html

import gradio as gr

from learning.models import DEFAULT_USER


def user_of(request: gr.Request | None) -> str:
    """The logged-in user (Gradio auth), or the single local user without login."""
    return (getattr(request, "username", None) or DEFAULT_USER) if request is not None else DEFAULT_USER


def error_html(message: str) -> str:
    return f"<div class='dg-error' id='dg-error'>{html.escape(message)}</div>"
