"""The view cache: a repeated read is free, progress is fresh, and any change (image finished, review) is seen at once."""

from __future__ import annotations

import json

from draftgrid.live import LiveBatch, LiveBoard
from draftgrid.views import BatchView, ViewCache
from learning.models import BatchRecord


def _view(version: int, live: LiveBatch | None = None) -> BatchView:
    batch = BatchRecord("b", "u", "s", "p", "", (), "draft", "sd15", True, True, "explore", "x", 0.1, 1)
    return BatchView(batch, f"v{version}", (), live)


def test_cached_until_the_batch_changes() -> None:
    cache, board, builds = ViewCache(), LiveBoard(), []

    def build() -> BatchView:
        builds.append(1)
        return _view(len(builds), board.get("b"))

    board.open("b", total=2, expected_steps=4)
    first = cache.get("b", board.get("b"), build)
    assert cache.get("b", board.get("b"), build) is first and len(builds) == 1
    board.step("b")  # sampler progress: the same view, with the new progress attached
    board.preview("b", b"png")
    progressed = cache.get("b", board.get("b"), build)
    assert len(builds) == 1 and progressed.status == first.status and progressed.live == board.get("b")
    assert progressed.live is not None and progressed.live.steps == (1, 4) and progressed.live.preview == b"png"
    board.images_done("b", ["i1"])  # an image finished: stale
    second = cache.get("b", board.get("b"), build)
    assert second is not first and len(builds) == 2
    cache.reviewed("b")  # a selection changed: stale, but peek still has the last one
    assert cache.peek("b") is second
    assert cache.get("b", board.get("b"), build).status == "v3"
    assert cache.peek("nope") is None


def test_capacity_bounds_memory() -> None:
    cache = ViewCache(capacity=2)
    for batch_id in ("a", "b", "c"):
        cache.get(batch_id, None, lambda: _view(0))
    builds = []
    cache.get("a", None, lambda: builds.append(1) or _view(1))
    assert builds == [1]


def test_current_answers_only_what_needs_no_build() -> None:
    cache, board = ViewCache(), LiveBoard()
    board.open("b", total=2, expected_steps=4)
    assert cache.current("b", board.get("b")) is None  # nothing built yet
    built = cache.get("b", board.get("b"), lambda: _view(1, board.get("b")))
    board.step("b")
    stepped = cache.current("b", board.get("b"))
    assert stepped is not None and stepped.status == built.status and stepped.live == board.get("b")
    board.images_done("b", ["i1"])
    assert cache.current("b", board.get("b")) is None  # an image finished: a read is needed
    cache.get("b", board.get("b"), lambda: _view(2, board.get("b")))
    cache.reviewed("b")
    assert cache.current("b", board.get("b")) is None  # a review: a read is needed


def test_a_cached_view_is_encoded_once_for_all_its_polls() -> None:
    cache, board = ViewCache(), LiveBoard()
    board.open("b", total=2, expected_steps=4)
    built = cache.get("b", board.get("b"), lambda: _view(1, board.get("b")))
    encoded = built.json_bytes()
    assert json.loads(encoded) == built.as_json()
    board.step("b")  # a progress-attached copy: the same bytes object, not a second encoding
    stepped = cache.current("b", board.get("b"))
    assert stepped is not None and stepped is not built and stepped.json_bytes() is encoded
    board.images_done("b", ["i1"])
    rebuilt = cache.get("b", board.get("b"), lambda: _view(2, board.get("b")))
    assert rebuilt.json_bytes() is not encoded and json.loads(rebuilt.json_bytes())["status"] == "v2"


def test_the_grid_order_is_the_completion_order_whether_or_not_the_board_still_holds_the_batch(
        tmp_path) -> None:  # noqa: ANN001
    """A click selects the gallery's index-th image: the order must not change when the live board
    forgets an ended batch (it once fell back to image ids then, and a click picked another image)."""
    from draftgrid.batch_reader import build_view
    from learning.models import ImageStatus
    from learning.store.preference_store import PreferenceStore
    from tests.learning.store_builders import make_batch, make_image

    with PreferenceStore.open(tmp_path / "s.duckdb") as store:
        batch = make_batch("b", count=4)
        images = [make_image(batch, i, status="queued") for i in range(4)]
        store.add_batch(batch, images)
        finished = [images[i].image_id for i in (2, 0, 3)]  # not in id order
        board = LiveBoard()
        board.open("b", total=4, expected_steps=0)
        for image_id in finished:
            store.update_images([ImageStatus(image_id, "done", "gpu", f"/x/{image_id}.png")])
            board.images_done("b", [image_id])
        live = build_view("b", board.get("b"), store.batch_snapshot("b"))
        forgotten = build_view("b", None, store.batch_snapshot("b"))
    done = lambda view: [v.record.image_id for v in view.images if v.status == "done"]  # noqa: E731
    assert done(live) == done(forgotten) == finished


def test_a_job_starting_rebuilds_the_view_from_the_same_store_read() -> None:
    """A job starting to sample lives on the board alone: the view changes (running), the store
    read is reused. What the store may hold anew (an image ended, a review, a retention pass, the
    batch's end) reads it again."""
    cache, board, reads = ViewCache(), LiveBoard(), []
    snapshot = object()

    def read() -> object:
        reads.append(1)
        return snapshot

    def view() -> object:
        live = board.get("b")
        return cache.get("b", live, lambda: _view(len(reads), live) if cache.snapshot("b", live, read) else None)

    board.open("b", total=3, expected_steps=4)
    view()
    board.images_running("b", ["i1"])
    running = view()
    assert len(reads) == 1 and running.live is not None and running.live.running == {"i1"}
    changes = [(lambda: board.images_done("b", ["i1"]), 1), (lambda: cache.reviewed("b"), 1),
               (lambda: board.images_running("b", ["i2"]), 0), (cache.images_removed, 1),
               (lambda: board.images_failed("b", ["i2"], "boom"), 1), (lambda: board.finish("b"), 1)]
    for change, new_reads in changes:
        before = len(reads)
        change()
        view()
        assert len(reads) == before + new_reads
    assert cache.snapshot("nope", None, lambda: None) is None and cache.snapshot("nope", None, read) is snapshot


def test_an_evicted_batch_never_gets_a_read_from_before_its_reviews_back() -> None:
    """Eviction forgets a batch's review count; the read kept with it goes at the same time, so a
    count that starts again from zero cannot match a read taken before the reviews."""
    cache, board = ViewCache(capacity=1), LiveBoard()
    for batch_id in ("a", "b"):
        board.open(batch_id, total=2, expected_steps=4)
    stale, fresh = object(), object()
    cache.get("a", board.get("a"), lambda: _view(0) if cache.snapshot("a", board.get("a"), lambda: stale) else None)
    cache.reviewed("a")
    cache.get("b", board.get("b"), lambda: _view(0))  # evicts "a" and its review count
    assert cache.snapshot("a", board.get("a"), lambda: fresh) is fresh


def test_only_running_batches_keep_their_read() -> None:
    """An ended batch's view changes only with a read (a review, a retention pass): keeping its
    read would only hold memory, so none is kept — nor one for a batch the board does not hold."""
    cache, board, reads = ViewCache(), LiveBoard(), []

    def read() -> object:
        reads.append(1)
        return object()

    board.open("b", total=1, expected_steps=1)
    board.finish("b")
    for live in (board.get("b"), None):
        cache.snapshot("b", live, read)
        cache.snapshot("b", live, read)
    assert len(reads) == 4
