"""The view cache: a repeated read is free, and any change (image finished, review) is seen at once."""

from __future__ import annotations

from draftgrid.live import LiveBoard
from draftgrid.views import BatchView, ViewCache
from learning.models import BatchRecord


def _view(version: int) -> BatchView:
    batch = BatchRecord("b", "u", "s", "p", "", (), "draft", "sd15", True, True, "explore", "x", 0.1, 1)
    return BatchView(batch, f"v{version}", (), None)


def test_cached_until_the_batch_changes() -> None:
    cache, board, builds = ViewCache(), LiveBoard(), []

    def build() -> BatchView:
        builds.append(1)
        return _view(len(builds))

    board.open("b", total=2, expected_steps=4)
    first = cache.get("b", board.get("b"), build)
    assert cache.get("b", board.get("b"), build) is first and len(builds) == 1
    board.image_done("b", "i1")  # an image finished: stale
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
