"""What the Gradio UI modules share: who is calling, and how an error shows."""

from __future__ import annotations

import html

import gradio as gr
from gradio.route_utils import get_root_url

from learning.models import DEFAULT_USER


def user_of(request: gr.Request | None) -> str:
    """The logged-in user (Gradio auth), or the single local user without login."""
    return (getattr(request, "username", None) or DEFAULT_USER) if request is not None else DEFAULT_USER


def error_html(message: str) -> str:
    return f"<div class='dg-error' id='dg-error'>{html.escape(message)}</div>"


def app_root(request: gr.Request | None) -> str:
    """The app's public URL (no trailing slash) as the browser reached it, proxies included, so a
    gallery can show images from the app's own REST routes: Gradio passes an absolute http(s) URL
    to the browser as it is, while a relative one would be read as a server file."""
    raw = getattr(request, "request", None) if request is not None else None
    if raw is None:
        return ""
    return get_root_url(request=raw, route_path=raw.url.path, root_path=raw.scope.get("root_path") or None)


def image_url(request: gr.Request | None, image_id: str, thumbnail: bool = False) -> str:
    """The absolute URL of an image (or its thumbnail) on the app's own cached route."""
    return f"{app_root(request)}/api/images/{image_id}" + ("/thumbnail" if thumbnail else "")


# clicks the Generate tab's button (a handler cannot switch tabs without the Tabs container)
SHOW_GENERATE_TAB = ("() => { const tab = [...document.querySelectorAll('button[role=\"tab\"]')]"
                     ".find(b => b.textContent.trim() === 'Generate'); if (tab) tab.click(); }")
