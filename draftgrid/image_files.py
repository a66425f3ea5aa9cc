"""The app's image files: where each generated PNG lives, under the app's own image id, and how
much disk they and their thumbnails use.

Files are written atomically (a temporary name, then a rename), so a crash never leaves half a
PNG under a real name; the database records the path only after the rename.

Disk use is measured once, when the folder is opened (a scan), and then kept as a running total
that every save, new thumbnail and removal moves, so asking for it costs nothing.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from draftgrid.thumbnails import STATES, removed_placeholder, thumbnail, thumbnail_path

log = logging.getLogger(__name__)

PLACEHOLDER_NAME = "_removed.png"  # not an image id: image ids are hex


class _Usage:
    """Bytes one image uses: its PNG, its thumbnails, and which thumbnails are counted."""

    __slots__ = ("png", "thumbs", "marks")

    def __init__(self) -> None:
        self.png = 0
        self.thumbs = 0
        self.marks = 0  # bit i: the thumbnail for STATES[i] is counted

    @property
    def total(self) -> int:
        return self.png + self.thumbs


class ImageFiles:
    """Generated images and their thumbnails under one data directory, and the bytes they use."""

    def __init__(self, data_dir: Path) -> None:
        self.images_dir = data_dir / "images"
        self.thumbs_dir = data_dir / "thumbs"
        self._lock = threading.Lock()
        self._usage: dict[str, _Usage] = {}
        self._total = 0
        self._scan()

    def path(self, image_id: str) -> Path:
        return self.images_dir / image_id[:2] / f"{image_id}.png"

    def save(self, image_id: str, png: bytes) -> Path:
        path = self.path(image_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(png)
        tmp.replace(path)
        with self._lock:
            usage = self._usage.setdefault(image_id, _Usage())
            self._total += len(png) - usage.png
            usage.png = len(png)
        return path

    def read(self, image_id: str) -> bytes:
        return self.path(image_id).read_bytes()

    def thumbnail(self, image_id: str, state: str) -> Path:
        """A thumbnail of the image with its selection mark drawn in (made once, then cached on
        disk); the placeholder if the image's file was removed meanwhile."""
        bit = 1 << STATES.index(state)
        try:
            target = thumbnail(self.path(image_id), self.thumbs_dir, state)
        except FileNotFoundError:
            return self.placeholder()
        with self._lock:
            usage = self._usage.get(image_id)
            counted = usage is not None and usage.marks & bit
        if counted:
            return target
        size = target.stat().st_size
        with self._lock:
            usage = self._usage.get(image_id)
            if usage is not None and not usage.marks & bit:
                usage.marks |= bit
                usage.thumbs += size
                self._total += size
        if usage is None:  # removed while its thumbnail was made: leave nothing behind
            target.unlink(missing_ok=True)
            return self.placeholder()
        return target

    def thumbnail_png(self, image_id: str) -> bytes:
        """The unmarked thumbnail's bytes; FileNotFoundError when the image has no file."""
        target = self.thumbnail(image_id, "none")
        if target.name == PLACEHOLDER_NAME:
            raise FileNotFoundError(image_id)
        return target.read_bytes()

    def placeholder(self) -> Path:
        """The grey "removed to save space" picture shown in place of a removed image (made once;
        in the thumbnails folder, the one Gradio serves)."""
        return removed_placeholder(self.thumbs_dir / PLACEHOLDER_NAME)

    def remove(self, image_id: str) -> int:
        """Delete the image's PNG and thumbnails; returns the bytes freed."""
        with self._lock:
            usage = self._usage.pop(image_id, None)
            freed = usage.total if usage is not None else 0
            self._total -= freed
        self.path(image_id).unlink(missing_ok=True)
        for state in STATES:
            thumbnail_path(self.thumbs_dir, image_id, state).unlink(missing_ok=True)
        return freed

    def used_bytes(self) -> int:
        """Bytes the images and their thumbnails use on disk now (a running total)."""
        with self._lock:
            return self._total

    def sizes(self) -> dict[str, int]:
        """Bytes on disk per image id (PNG and thumbnails), for every image file there is."""
        with self._lock:
            return {image_id: usage.total for image_id, usage in self._usage.items()}

    def _scan(self) -> None:
        """Measure the images and thumbnails already on disk (temporary files are not counted)."""
        for folder in _folders(self.images_dir):
            for entry in _files(folder):
                stem, dot, ext = entry.name.partition(".")
                if ext == "png" and stem:
                    self._usage.setdefault(stem, _Usage()).png = entry.stat().st_size
        for entry in _files(self.thumbs_dir):
            stem, state, ext = (entry.name.split(".") + ["", ""])[:3]
            if ext == "png" and state in STATES and entry.name.count(".") == 2:
                usage = self._usage.setdefault(stem, _Usage())
                usage.thumbs += entry.stat().st_size
                usage.marks |= 1 << STATES.index(state)
        self._total = sum(usage.total for usage in self._usage.values())
        log.info("image files in %s: %d images, %.1f MB with their thumbnails", self.images_dir.parent,
                 len(self._usage), self._total / 1e6)


def _folders(root: Path) -> list[Path]:
    try:
        return [Path(entry.path) for entry in os.scandir(root) if entry.is_dir()]
    except FileNotFoundError:
        return []


def _files(folder: Path) -> list[os.DirEntry[str]]:
    try:
        return [entry for entry in os.scandir(folder) if entry.is_file()]
    except FileNotFoundError:
        return []
