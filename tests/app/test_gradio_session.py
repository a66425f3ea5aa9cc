"""What a Gradio session keeps while batches stream: nothing that grows with the number of updates.

Gradio 6.31 keeps one more copy of a component in the session each time an output gets
`gr.skip()` and then a plain value; the stream skips the gallery on sampler updates and once sent
plain values otherwise, so a browser tab's session grew by a gallery per update (the soak's
remaining leak). The gallery now always gets updates. Thumbnails are served from their own
folder, not copied into Gradio's cache for every gallery value.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import gradio
import pytest
from gradio_client import Client

from draftgrid.launch import RunningApp
from tests.app.conftest import start_app


@pytest.fixture(scope="module")
def streaming_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    # a little sampler time, so that every batch streams progress updates between its images
    running = start_app(tmp_path_factory.mktemp("session"), sim_speed=50.0)
    yield running
    running.close()


def _generate(ui: Client, count: int) -> list[dict]:
    job = ui.submit("a lighthouse at dusk", "", "1:1", True, "Explore", "sd15", count, None, None, "", None, True,
                    api_name="/generate")
    outputs = list(job)
    job.result()
    return outputs


def test_streaming_batches_do_not_grow_the_session(streaming_app: RunningApp) -> None:
    ui = Client(streaming_app.local_url, verbose=False, download_files=False)
    _generate(ui, 6)
    session = streaming_app.demo.state_holder.session_data[ui.session_hash]
    after_one = len(session.blocks_config.blocks), len(session.config_values)
    for _ in range(3):
        _generate(ui, 6)
    ui.predict("Me", "", api_name="/stats")
    assert (len(session.blocks_config.blocks), len(session.config_values)) == after_one
    assert set(session.blocks_config.blocks) <= set(streaming_app.demo.blocks)


def _cached_files() -> set[Path]:
    cache = Path(gradio.utils.get_upload_folder())
    return set(cache.rglob("*")) if cache.exists() else set()


def test_gallery_thumbnails_are_not_copied_into_gradios_cache(streaming_app: RunningApp) -> None:
    ui = Client(streaming_app.local_url, verbose=False, download_files=False)
    before = _cached_files()
    for _ in range(3):
        _generate(ui, 4)
    thumbs = list(Path(streaming_app.backend.service.thumbnails_dir).rglob("*.*"))
    assert len(thumbs) >= 12, "the gallery made no thumbnails: the test shows nothing"
    assert _cached_files() - before == set()


def test_streamed_gallery_updates_never_recompute_the_api_schema(
        streaming_app: RunningApp, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every gallery update is a new component in the session (Gradio 6.31), and each used to ask
    pydantic for the gallery's JSON schema again (~2 ms of GIL per update): now once per process."""
    from gradio.components.gallery import GalleryData

    from draftgrid.ui_gallery import Gallery

    schemas, made = [], []
    real_schema = GalleryData.model_json_schema.__func__  # type: ignore[attr-defined]
    real_init = Gallery.__init__
    monkeypatch.setattr(GalleryData, "model_json_schema",
                        classmethod(lambda cls, *a, **kw: schemas.append(1) or real_schema(cls, *a, **kw)))
    monkeypatch.setattr(Gallery, "__init__", lambda self, *a, **kw: made.append(1) or real_init(self, *a, **kw))
    ui = Client(streaming_app.local_url, verbose=False, download_files=False)
    _generate(ui, 6)
    session = streaming_app.demo.state_holder.session_data[ui.session_hash]
    galleries = [b for b in session.blocks_config.blocks.values() if isinstance(b, gradio.Gallery)]
    assert galleries and all(isinstance(b, Gallery) for b in galleries)
    assert len(made) >= 2  # a gallery per streamed update, as Gradio does it
    assert schemas == []  # the first gallery of the process worked the schema out before this test
