"""Where a batch's state lives, and the one order in which it is written and read.

Two places hold a running batch. The store (DuckDB) holds each image's durable status; the live
board (memory) holds what only matters while it runs: completion order, which images are
sampling, progress, the latest preview, and whether the batch has ended. A view combines both, so
the two must never be read in an order that lets them contradict each other:

* **write the store, then the board** — whatever the board says has happened (an image done or
  failed, the batch ended) is already in the store;
* **read the board, then the store, once each** — the store read is then at least as new as the
  board read, so "ended" from the board never meets an image the store still calls queued.

Read the other way round, a poll that read the store, then (a moment later) a board that had
just ended the batch, reported it `partial` beside images still queued with no error
(`tests/reliability/test_batch_truth.py` holds a poll between its reads to show it). Every write
and read of a batch's state goes through `BatchState`, so this rule lives here and nowhere else.

A view is rebuilt whenever what it shows changes, but half of those changes (a job starting to
sample) live on the board alone; the store read that followed an earlier board read is then
reused (`ViewCache.snapshot`). The rule holds for it: it followed a board read that showed the same
ended images and end as the board read now, and nothing else wrote the batch since.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from draftgrid.live import LiveBatch, LiveBoard
from draftgrid.views import BatchView, ViewCache
from learning.models import BatchRecord, ImageRecord, ImageStatus, JobRecord
from learning.store.fact_reads import BatchSnapshot
from learning.store.preference_store import PreferenceStore

ViewBuilder = Callable[[LiveBatch | None, BatchSnapshot | None], BatchView]


class BatchState:
    """The store and the live board of every batch, written and read in the safe order."""

    def __init__(self, store: PreferenceStore, board: LiveBoard | None = None,
                 views: ViewCache | None = None) -> None:
        self._store = store
        self._board = board or LiveBoard()
        self._views = views or ViewCache()

    # ------------------------------------------------------------------ writes: store, then board
    def open(self, record: BatchRecord, images: Sequence[ImageRecord], expected_steps: int,
             jobs: Sequence[JobRecord] = ()) -> None:
        """A new batch: its images stored as queued with the prompts that make them (and the
        session's earlier batches marked moved on), then shown on the board."""
        self._store.add_batch(record, list(images), moved_on=True, jobs=jobs)
        self._board.open(record.batch_id, len(images), expected_steps)

    def images_done(self, batch_id: str, statuses: Sequence[ImageStatus]) -> None:
        """A job's images are on disk: one store write for all of them, then one board change."""
        self._store.update_images(list(statuses))
        self._board.images_done(batch_id, [s.image_id for s in statuses])

    def images_failed(self, batch_id: str, image_ids: Sequence[str], reason: str) -> None:
        self._store.update_images([ImageStatus(i, "failed", error=reason) for i in image_ids])
        self._board.images_failed(batch_id, list(image_ids), reason)

    def images_pruned(self, image_ids: Sequence[str]) -> list[str]:
        """The retention policy removes these images' files: marked in the store (those still
        unprotected there), then every cached view is stale. Returns the ids marked."""
        marked = [image_id for image_id, _batch in self._store.mark_pruned(image_ids)]
        if marked:
            self._views.images_removed()
        return marked

    def finish(self, batch_id: str) -> None:
        """The batch ended. Call only once every image was stored done or failed."""
        self._board.finish(batch_id)

    # board only: what a view shows of these is never read from the store
    def images_running(self, batch_id: str, image_ids: Sequence[str]) -> None:
        self._board.images_running(batch_id, list(image_ids))

    def step(self, batch_id: str) -> None:
        self._board.step(batch_id)

    def preview(self, batch_id: str, image: bytes) -> None:
        self._board.preview(batch_id, image)

    def reviewed(self, batch_id: str) -> None:
        """A review was stored: views of this batch show old marks."""
        self._views.reviewed(batch_id)

    # ------------------------------------------------------------------ reads: board, then store
    def view(self, batch_id: str, build: ViewBuilder) -> BatchView:
        """The batch's view: the cached one if nothing it shows changed, else `build(live, snapshot)`
        from one board read followed by one store read."""
        live = self._board.get(batch_id)
        return self._views.get(batch_id, live, lambda: build(
            live, self._views.snapshot(batch_id, live, lambda: self._store.batch_snapshot(batch_id))))

    def current_view(self, batch_id: str) -> BatchView | None:
        """The cached view if it is still current (one board read, no store read), else None."""
        return self._views.current(batch_id, self._board.get(batch_id))

    def cached_view(self, batch_id: str) -> BatchView | None:
        """The last view built, however stale: enough for what never changes (owner, image ids)."""
        return self._views.peek(batch_id)

    def live(self, batch_id: str) -> LiveBatch | None:
        return self._board.get(batch_id)

    def wait(self, batch_id: str, after_version: int, timeout: float, images_only: bool = False) -> LiveBatch | None:
        """Block until the board shows a change (see `LiveBoard.wait`)."""
        return self._board.wait(batch_id, after_version, timeout, images_only)
