"""The app's image files: where each generated PNG lives, under the app's own image id.

Files are written atomically (a temporary name, then a rename), so a crash never leaves half a
PNG under a real name; the database records the path only after the rename.
"""

from __future__ import annotations

from pathlib import Path

from draftgrid.thumbnails import thumbnail


class ImageFiles:
    """Generated images and their thumbnails under one data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.images_dir = data_dir / "images"
        self.thumbs_dir = data_dir / "thumbs"

    def path(self, image_id: str) -> Path:
        return self.images_dir / image_id[:2] / f"{image_id}.png"

    def save(self, image_id: str, png: bytes) -> Path:
        path = self.path(image_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(png)
        tmp.replace(path)
        return path

    def read(self, image_id: str) -> bytes:
        return self.path(image_id).read_bytes()

    def thumbnail(self, image_id: str, state: str) -> Path:
        """A thumbnail of the image with its selection mark drawn in (made once, then cached on disk)."""
        return thumbnail(self.path(image_id), self.thumbs_dir, state)
