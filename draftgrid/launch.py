"""Launch the Gradio app with the REST API on the same server (tests and `app.py` share this).

REST routes are added to Gradio's own FastAPI app after `launch(prevent_thread_lock=True)`, which
keeps `share=True` working (`gr.mount_gradio_app` cannot make share links).

Gradio's launch checks its own page afterwards (`networking.url_ok`: HEAD requests of 3 s that
give up at the first time-out) and refuses to start when that fails. On a busy two-core machine
rendering the page can take longer than 3 s, and the app failed to start although it was serving.
That check is for proxies and notebooks; launch has already waited, without a time-out, for its own
`startup-events` route, so the server is known to answer. `_frontend=False` (gradio 6.31, pinned)
skips only that check.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import gradio as gr

from draftgrid.api import install_api
from draftgrid.api_reset_monitor import build_reset_monitor_router
from draftgrid.auth import make_current_user
from draftgrid.bootstrap import Backend
from draftgrid.config import AppConfig
from draftgrid.ui import build_ui

log = logging.getLogger(__name__)


@dataclass
class RunningApp:
    demo: gr.Blocks
    backend: Backend
    local_url: str
    share_url: str | None

    def close(self) -> None:
        try:
            self.demo.close()
        finally:
            self.backend.stop()


def launch(config: AppConfig, backend: Backend) -> RunningApp:
    """Serve the UI and REST on a started backend (`start_backend`, which opens the database
    first); on a failure here the backend is stopped."""
    try:
        # thumbnails are served from their folder as they are: Gradio would otherwise copy each one
        # into its own cache on every gallery value, a copy per image that nothing ever removes
        gr.set_static_paths([backend.service.thumbnails_dir.resolve()])
        demo, css, js = build_ui(backend.service)
        credentials = dict(config.auth)
        demo.queue(default_concurrency_limit=None)
        app, local_url, share_url = demo.launch(
            server_name=config.host, server_port=config.port, share=config.share,
            auth=list(config.auth) or None, prevent_thread_lock=True, quiet=True, css=css, js=js,
            show_error=True,
            footer_links=["api"], ssr_mode=False, _frontend=False,
        )
        current_user = make_current_user(app, credentials)
        install_api(app, backend.service, current_user)
        app.include_router(build_reset_monitor_router(backend.service, current_user))
    except Exception:
        backend.stop()
        raise
    log.info("DraftGrid UI at %s%s", local_url, f", shared at {share_url}" if share_url else "")
    return RunningApp(demo, backend, local_url, share_url)
