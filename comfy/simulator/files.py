"""The server's output, temp and input folders, with ComfyUI's naming and path rules.

Saved images are named `{prefix}_{counter:05}_.png`, the counter continuing from the highest one
already in the folder; uploads keep their name unless a different file already has it
(`name (1).png`); every client-supplied path is kept inside its folder.

Real ComfyUI keeps every image it saves. A simulator built into a long-running app (a demo Space)
would then fill its disk with placeholder pictures the app has long downloaded, so `keep_images`
bounds the saved images to the newest N (the oldest file is deleted as a new one is named); None
keeps them all, as ComfyUI does.
"""

from __future__ import annotations

import logging
import re
from collections import deque
from pathlib import Path

log = logging.getLogger(__name__)

FOLDER_TYPES = ("output", "input", "temp")


class OutsideFolderError(ValueError):
    """A client-supplied path that would leave its folder."""


def _inside(base: Path, candidate: Path) -> bool:
    return candidate.resolve().is_relative_to(base.resolve())


class FileStore:
    """Folders under one root directory; `output_dir` of the simulator."""

    def __init__(self, root: Path, keep_images: int | None = None) -> None:
        if keep_images is not None and keep_images < 1:
            raise ValueError(f"keep_images must be at least 1 (or None: keep all), not {keep_images}")
        self.root = root
        for folder in FOLDER_TYPES:
            (root / folder).mkdir(parents=True, exist_ok=True)
        self._counters: dict[tuple[Path, str], int] = {}
        self._keep = keep_images
        self._saved: deque[Path] = deque()

    def folder(self, folder_type: str) -> Path | None:
        return self.root / folder_type if folder_type in FOLDER_TYPES else None

    def next_image_path(self, folder_type: str, filename_prefix: str) -> tuple[Path, str, str]:
        """(path, file name, subfolder) for the next image of `filename_prefix` (may hold `sub/`)."""
        base = self.root / folder_type
        prefix_path = Path(filename_prefix)
        directory = base / prefix_path.parent
        if not _inside(base, directory):
            raise OutsideFolderError("Saving image outside the output folder is not allowed.")
        directory.mkdir(parents=True, exist_ok=True)
        name = prefix_path.name
        key = (directory.resolve(), name)
        if key not in self._counters:
            pattern = re.compile(re.escape(name) + r"_(\d+)_")
            found = [int(m.group(1)) for f in directory.iterdir() if (m := pattern.match(f.name))]
            self._counters[key] = max(found, default=0) + 1
        counter = self._counters[key]
        self._counters[key] = counter + 1
        filename = f"{name}_{counter:05}_.png"
        subfolder = "" if str(prefix_path.parent) == "." else prefix_path.parent.as_posix()
        self._forget_oldest(directory / filename)
        return directory / filename, filename, subfolder

    def _forget_oldest(self, new: Path) -> None:
        """Count `new` among the saved images; past `keep_images`, delete the oldest."""
        if self._keep is None:
            return
        self._saved.append(new)
        while len(self._saved) > self._keep:
            self._saved.popleft().unlink(missing_ok=True)

    def view_path(self, filename: str, subfolder: str, folder_type: str) -> Path | int:
        """The file `/view` serves, or the HTTP status ComfyUI answers instead (400/403/404)."""
        if not filename or filename.startswith("/") or ".." in filename:
            return 400
        base = self.folder(folder_type)
        if base is None:
            return 400
        directory = base / subfolder
        if not _inside(base, directory):
            return 403
        path = directory / Path(filename).name
        return path if path.is_file() else 404

    def input_images(self) -> list[str]:
        """Files directly in the input folder: LoadImage's list in /object_info."""
        return sorted(f.name for f in (self.root / "input").iterdir() if f.is_file())

    def input_image(self, name: str) -> Path | None:
        """An input file by LoadImage name (`sub/name.png` allowed), if it exists inside input/."""
        base = self.root / "input"
        path = base / name
        return path if _inside(base, path) and path.is_file() else None

    def upload(self, data: bytes, filename: str, subfolder: str, folder_type: str, overwrite: bool) -> str:
        """Store an upload; returns the name it got. Identical bytes under the same name are reused."""
        base = self.root / folder_type
        directory = base / subfolder
        target = directory / filename
        if not _inside(base, target):
            raise OutsideFolderError(filename)
        directory.mkdir(parents=True, exist_ok=True)
        stem, suffix = Path(filename).stem, Path(filename).suffix
        attempt = 1
        while not overwrite and target.exists():
            if target.read_bytes() == data:
                log.info("upload %s is a duplicate of the stored file", target.name)
                return target.name
            target = directory / f"{stem} ({attempt}){suffix}"
            attempt += 1
        target.write_bytes(data)
        return target.name
