"""Starting the app does not depend on Gradio's 3-second self-check of its own page (see
`draftgrid/launch.py`): a machine too busy to render the page in time still starts the app."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from gradio import networking

from tests.app.conftest import start_app


def test_the_app_starts_when_gradios_page_check_would_time_out(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    checked: list[str] = []

    def page_too_slow(url: str) -> bool:  # what url_ok answers when a HEAD takes over 3 s
        checked.append(url)
        return False

    monkeypatch.setattr(networking, "url_ok", page_too_slow)
    running = start_app(tmp_path)
    try:
        assert checked == []
        with httpx.Client(base_url=running.local_url.rstrip("/"), timeout=30) as client:
            assert client.get("/").status_code == 200
            assert client.get("/api/gpus").status_code == 200
    finally:
        running.close()
