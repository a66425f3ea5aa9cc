"""Small pure pieces of the app: request validation, batch status, captions, auth, thumbnails."""

from __future__ import annotations

import base64
import threading
import time
from pathlib import Path

import pytest
from PIL import Image
from pydantic import ValidationError

from draftgrid.auth import _basic_credentials, check_password
from draftgrid.live import LiveBatch, LiveBoard
from draftgrid.schemas import GenerateRequest, readable_errors
from draftgrid.schemas import closest_aspect
from draftgrid.views import batch_status
from draftgrid.thumbnails import draw_selection, thumbnail


@pytest.mark.parametrize(("body", "field"), [
    ({"prompt": ""}, "prompt"),
    ({"prompt": "   \n"}, "prompt"),
    ({"prompt": "x" * 2001}, "prompt"),
    ({"prompt": "cat", "count": 0}, "count"),
    ({"prompt": "cat", "count": 10**6}, "count"),
    ({"prompt": "cat", "tier": "ultra"}, "tier"),
    ({"prompt": "cat", "model_family": "sd4"}, "model_family"),
    ({"prompt": "cat", "aspect_ratio": "5:1"}, "aspect_ratio"),
    ({"prompt": "a\x00b"}, "prompt"),
    ({"prompt": "cat", "width": 513}, "width"),
    ({"prompt": "cat", "surprise": 1}, "surprise"),
])
def test_bad_generate_requests_name_the_field(body: dict, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        GenerateRequest(**body)
    message = readable_errors(info.value)
    assert message.startswith(field), message


def test_prompts_are_kept_verbatim() -> None:
    odd = 'a "quoted" {brace} (word:1.3) [x] <lora:anime_style_v2:0.8>\nשלום 🎨'
    assert GenerateRequest(prompt=odd).prompt == odd


@pytest.mark.parametrize(("statuses", "finished", "expected"), [
    (["queued", "queued"], False, "queued"),
    (["done", "queued"], False, "running"),
    (["done", "done"], True, "done"),
    (["done", "failed"], True, "partial"),
    (["failed", "failed"], True, "failed"),
])
def test_batch_status(statuses: list[str], finished: bool, expected: str) -> None:
    assert batch_status(statuses, finished) == expected


def test_closest_aspect() -> None:
    assert closest_aspect(512, 512) == "1:1"
    assert closest_aspect(1344, 768) == "16:9"
    assert closest_aspect(576, 768) == "3:4"


def test_basic_auth_parsing_and_constant_time_check() -> None:
    header = "Basic " + base64.b64encode(b"ann:secret").decode()
    assert _basic_credentials(header) == ("ann", "secret")
    assert _basic_credentials("Basic !!!") is None and _basic_credentials("Bearer x") is None
    creds = {"ann": "secret"}
    assert check_password(creds, "ann", "secret")
    assert not check_password(creds, "ann", "wrong") and not check_password(creds, "bob", "")


def test_live_board_wakes_waiters_and_keeps_completion_order() -> None:
    board = LiveBoard()
    board.open("b", total=3, expected_steps=10)
    board.images_done("b", ["i2"])
    board.images_done("b", ["i1", "i2"])
    board.images_done("b", ["i2"])  # already done: no change
    snap = board.wait("b", after_version=0, timeout=0.1)
    assert snap is not None and snap.order == ("i2", "i1") and snap.version == 2
    board.finish("b")
    assert board.wait("b", after_version=snap.version, timeout=5).finished


def test_waiting_for_images_ignores_sampler_progress() -> None:
    """The UI's stream, with progress already pending, sleeps through steps and wakes for an image."""
    board = LiveBoard()
    board.open("a", total=2, expected_steps=10)
    board.open("b", total=2, expected_steps=10)
    seen = board.get("a")
    assert seen is not None
    threading.Timer(0.05, board.step, ["a"]).start()
    start = time.monotonic()
    snap = board.wait("a", seen.images_version, timeout=0.3, images_only=True)
    assert time.monotonic() - start >= 0.25 and snap is not None and snap.steps == (1, 10)
    threading.Timer(0.05, board.images_done, ["a", ["i1"]]).start()
    start = time.monotonic()
    snap = board.wait("a", seen.images_version, timeout=10, images_only=True)
    assert time.monotonic() - start < 5 and snap is not None and snap.order == ("i1",)
    assert board.get("b") == LiveBatch("b", 2, steps=(0, 10))  # the other batch untouched


def test_selection_is_drawn_into_a_copy(tmp_path: Path) -> None:
    src = tmp_path / "abc.png"
    Image.new("RGB", (512, 512), (10, 20, 200)).save(src)
    marked = draw_selection(Image.open(src))
    assert marked.getpixel((2, 256)) == (34, 197, 94)  # the frame
    assert Image.open(src).getpixel((2, 256)) == (10, 20, 200)  # the original is untouched
    path = thumbnail(src, tmp_path / "thumbs", "selected")
    assert path.exists() and thumbnail(src, tmp_path / "thumbs", "selected") == path
    assert Image.open(path).getpixel((2, 256)) == (34, 197, 94)
