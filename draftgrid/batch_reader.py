"""Reading batches: views for the API and UI, streams of a running batch, files, lineage.

Views come from `BatchState` (the live board read before the store, a cached view while nothing
it shows changed). Only the batch's owner sees it: another user's batch answers exactly like an
unknown one (404), so ids don't leak.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator

from draftgrid.batch_state import BatchState
from draftgrid.errors import Gone, NotFound
from draftgrid.image_files import ImageFiles
from draftgrid.live import LiveBatch
from draftgrid.thumbnails import REMOVED_TEXT
from draftgrid.views import BatchView, ImageView, batch_status, caption
from learning.models import ImageRecord
from learning.store.fact_reads import BatchSnapshot
from learning.store.preference_store import PreferenceStore

STEP_INTERVAL = 0.5  # seconds between stream updates that only show sampler progress


def build_view(batch_id: str, live: LiveBatch | None, snapshot: BatchSnapshot | None) -> BatchView:
    """A batch view from one board read and the store read that followed it (pure).

    An image the store calls queued is shown running while its job samples; finished images come
    first, in order of completion (the store's `finished_seq`). The batch counts as ended only when
    the board says so — and then, by the read order, the store already holds every image's end.
    """
    if snapshot is None:
        raise NotFound(f"batch {batch_id!r} not found")
    states = snapshot.facts.states()
    favourites = snapshot.facts.favourites()
    # completion order from the store's own `finished_seq`, never the live board's: the board forgets
    # an ended batch, and an order that changed then would move a thumbnail under the user's click
    # (the gallery's index-th image is what a click selects)
    finished_seq = {image.image_id: image.finished_seq for image in snapshot.facts.images}
    running = live.running if live else frozenset()

    def status(r: ImageRecord) -> str:
        return "running" if r.status == "queued" and r.image_id in running else r.status

    def order(r: ImageRecord) -> tuple[bool, float, str]:
        seq = finished_seq.get(r.image_id)
        return r.status != "done", math.inf if seq is None else seq, r.image_id

    records = sorted(snapshot.images, key=order)
    views = tuple(ImageView(r, status(r), states.get(r.image_id, "none"), r.image_id in favourites)
                  for r in records)
    ended = live.finished if live else True
    return BatchView(snapshot.batch, batch_status([v.status for v in views], ended), views, live)


def mine(view: BatchView, user_id: str) -> BatchView:
    """The view if `user_id` owns the batch, else NotFound exactly like an unknown id."""
    if view.batch.user_id != user_id:
        raise NotFound(f"batch {view.batch.batch_id!r} not found")
    return view


class BatchReader:
    """Views, streams, image files and refine chains of one user's batches."""

    def __init__(self, store: PreferenceStore, state: BatchState, files: ImageFiles,
                 removed_detail: Callable[[str], str]) -> None:
        self._store = store
        self._state = state
        self._files = files
        self._removed_detail = removed_detail  # why a pruned image's file is gone (the 410 detail)

    def view(self, user_id: str, batch_id: str) -> BatchView:
        """The batch as it is now (cached until an image ends or a review changes it)."""
        return mine(self._state.view(batch_id, lambda live, snap: build_view(batch_id, live, snap)), user_id)

    def current_view(self, user_id: str, batch_id: str) -> BatchView | None:
        """The batch's view if a current one is cached (never reads the store), else None."""
        view = self._state.current_view(batch_id)
        return mine(view, user_id) if view is not None else None

    def known_view(self, user_id: str, batch_id: str) -> BatchView:
        """Any view of the batch, however stale: a batch's owner and image ids never change."""
        cached = self._state.cached_view(batch_id)
        return mine(cached, user_id) if cached is not None else self.view(user_id, batch_id)

    def stream(self, user_id: str, batch_id: str, timeout: float = 600.0) -> Iterator[BatchView]:
        """Yield a fresh view as a running batch changes, ending with its final view.

        A finished or failed image is shown at once; sampler steps and previews (many per second
        across GPUs) at most every `STEP_INTERVAL`, so streaming costs the database little.
        """
        self.view(user_id, batch_id)  # 404 before streaming anything
        version, images_version, last, pending = -1, -1, 0.0, False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pending:  # progress to show: wake early only if an image changes
                wait = max(0.0, STEP_INTERVAL - (time.monotonic() - last))
                live = self._state.wait(batch_id, images_version, timeout=wait, images_only=True)
            else:
                live = self._state.wait(batch_id, version, timeout=1.0)
            if live is None or live.finished:
                yield self.view(user_id, batch_id)
                return
            pending = pending or live.version != version
            version = live.version
            if pending and (live.images_version != images_version or time.monotonic() - last >= STEP_INTERVAL):
                images_version, last, pending = live.images_version, time.monotonic(), False
                yield self.view(user_id, batch_id)

    def gallery_of(self, view: BatchView) -> list[tuple[str, str]]:
        """(thumbnail path, caption) of each finished image, in completion order, selection drawn in;
        a grey placeholder for an image the retention policy removed."""
        return [(str(self._files.placeholder()), f"{REMOVED_TEXT} · {caption(v)}") if v.pruned
                else (str(self._files.thumbnail(v.record.image_id, v.state)), caption(v))
                for v in view.images if v.status == "done"]

    def image_png(self, user_id: str, image_id: str) -> bytes:
        """The image's PNG bytes; NotFound for an unknown or another user's image, Gone once pruned."""
        return self._readable(user_id, image_id, lambda: self._files.read(image_id))

    def thumbnail_png(self, user_id: str, image_id: str) -> bytes:
        """The image's unmarked thumbnail (made once), checked like `image_png`."""
        return self._readable(user_id, image_id, lambda: self._files.thumbnail_png(image_id))

    def check_image(self, user_id: str, image_id: str) -> None:
        """Raise as `image_png` would, without reading the file (a conditional GET's 304)."""
        self._readable(user_id, image_id, lambda: b"")

    def _readable(self, user_id: str, image_id: str, read: Callable[[], bytes]) -> bytes:
        """`read()` for one of the user's done images. Read here rather than streamed later: a
        retention pass may delete the file meanwhile, and it marks the row pruned before it
        deletes, so a missing file is then a clean 410."""
        image = self._store.get_image(image_id, user_id)
        if image is None or image.status != "done" or not image.path:
            raise NotFound(f"image {image_id!r} not found")
        if image.pruned_at is None:
            try:
                return read()
            except FileNotFoundError:
                image = self._store.get_image(image_id, user_id)
                if image is None or image.pruned_at is None:
                    raise NotFound(f"image {image_id!r} has no file") from None
        raise Gone(self._removed_detail(image_id))

    def lineage(self, user_id: str, image_id: str) -> list[dict[str, object]]:
        """The refine chain from the first draft to this image (oldest first)."""
        if self._store.get_image(image_id, user_id) is None:
            raise NotFound(f"image {image_id!r} not found")
        return [ImageView(r, r.status, "none").as_json() for r in self._store.lineage(image_id)]
