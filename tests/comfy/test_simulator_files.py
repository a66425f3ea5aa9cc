"""The simulator's disk: a bounded number of saved images when asked, and no folder left behind."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from comfy.simulator.files import FileStore
from comfy.simulator.thread import SimulatorThread


def _save(files: FileStore, prefix: str) -> Path:
    path, _, _ = files.next_image_path("output", prefix)
    path.write_bytes(b"png")
    return path


def test_keep_images_deletes_the_oldest_saved_images(tmp_path: Path) -> None:
    files = FileStore(tmp_path, keep_images=3)
    paths = [_save(files, "draft") for _ in range(5)] + [_save(files, "sub/other")]
    assert [p.exists() for p in paths] == [False, False, False, True, True, True]
    assert paths[-1].parent.name == "sub"


def test_without_keep_images_every_image_stays_as_in_comfyui(tmp_path: Path) -> None:
    files = FileStore(tmp_path)
    paths = [_save(files, "draft") for _ in range(50)]
    assert all(p.exists() for p in paths)


def test_keep_images_below_one_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        FileStore(tmp_path, keep_images=0)


def test_a_stopped_thread_removes_the_temporary_folders_it_made(tmp_path: Path) -> None:
    own = SimulatorThread(count=2, speed=0)
    urls = own.start()
    folders = [server.files.root for server in own.servers]
    assert all(f.is_dir() for f in folders) and len(set(folders)) == 2
    assert all(httpx.get(f"{url}/system_stats").status_code == 200 for url in urls)
    own.stop()
    assert not any(f.exists() for f in folders)

    given = SimulatorThread(count=1, speed=0, output_dir=tmp_path)
    given.start()
    root = given.servers[0].files.root
    given.stop()
    assert root.is_dir(), "a folder the caller named is the caller's to keep"
