"""Errors the preference store raises: typed so the app can map them to 404 / 422 / a clear exit."""

from __future__ import annotations

from pathlib import Path


class StoreError(Exception):
    """Base of every error raised on purpose by the preference store."""


class DatabaseLockedError(StoreError):
    """The DuckDB file is held by another process (DuckDB allows one writing process per file)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        super().__init__(
            f"The preference database {self.path} is locked: another DraftGrid process holds it. "
            "Stop that process or start this one with a different --db path."
        )


class SchemaTooNewError(StoreError):
    """The file was written by a newer DraftGrid: opening it could lose data, so we refuse."""


class UnknownBatchError(StoreError, LookupError):
    """The batch does not exist, or belongs to another user (indistinguishable on purpose)."""

    def __init__(self, batch_id: str) -> None:
        self.batch_id = batch_id
        super().__init__(f"unknown batch {batch_id!r}")


class UnknownImageError(StoreError, LookupError):
    """The image does not exist, or is not part of the batch it was named with."""

    def __init__(self, image_id: str, batch_id: str | None = None) -> None:
        self.image_id = image_id
        self.batch_id = batch_id
        where = f" in batch {batch_id!r}" if batch_id else ""
        super().__init__(f"unknown image {image_id!r}{where}")


class UnknownResetError(StoreError, LookupError):
    """The reset does not exist, or belongs to another user (indistinguishable on purpose)."""

    def __init__(self, reset_id: int) -> None:
        self.reset_id = reset_id
        super().__init__(f"unknown reset {reset_id}")


class ImageNotDoneError(StoreError, ValueError):
    """Only a done image can be a favourite; this one is queued, running or failed."""

    def __init__(self, image_id: str) -> None:
        super().__init__(f"image {image_id} is not done; only a finished image can be a favourite")
        self.image_id = image_id
