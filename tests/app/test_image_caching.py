"""GET /api/images/{id} and /thumbnail: immutable by id, so cached for a year with an ETag; a
conditional GET is a 304 without the bytes, still 404 for an unknown id and 410 once removed."""

from __future__ import annotations

import io
from collections.abc import Callable

import httpx
from PIL import Image

from draftgrid.api_images import etag_matches
from draftgrid.launch import RunningApp
from draftgrid.thumbnails import THUMB_MAX
from tests.app.conftest import wait_done

IMMUTABLE = "private, max-age=31536000, immutable"


def test_images_and_thumbnails_are_cached_by_etag_and_revalidate_with_304(
        app: RunningApp, client: httpx.Client, generate: Callable[..., dict]) -> None:
    batch = wait_done(client, generate(prompt="a harbour at night", count=3, aspect_ratio="16:9")["batch_id"])
    first, second = (i["image_id"] for i in batch["images"][:2])
    full = client.get(f"/api/images/{first}")
    thumb = client.get(f"/api/images/{first}/thumbnail")
    for response in (full, thumb):
        assert response.status_code == 200 and response.headers["content-type"] == "image/png"
        assert response.headers["cache-control"] == IMMUTABLE
    assert full.headers["etag"] != thumb.headers["etag"]
    assert full.headers["etag"] != client.get(f"/api/images/{second}").headers["etag"]
    with Image.open(io.BytesIO(full.content)) as big, Image.open(io.BytesIO(thumb.content)) as small:
        assert max(small.size) <= THUMB_MAX and small.size[0] > small.size[1]  # the shape is kept
        assert big.size[0] > small.size[0]

    for response, url in ((full, f"/api/images/{first}"), (thumb, f"/api/images/{first}/thumbnail")):
        again = client.get(url, headers={"If-None-Match": response.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
        assert again.headers["etag"] == response.headers["etag"] and again.headers["cache-control"] == IMMUTABLE
        other = client.get(url, headers={"If-None-Match": '"something-else"'})
        assert other.status_code == 200 and other.content == response.content

    assert client.get("/api/images/unknown", headers={"If-None-Match": "*"}).status_code == 404
    assert client.get("/api/images/unknown/thumbnail").status_code == 404

    assert app.backend.store.mark_pruned([second]) == [(second, batch["batch_id"])]  # as the retention policy does
    for url in (f"/api/images/{second}", f"/api/images/{second}/thumbnail"):
        assert client.get(url).status_code == 410
        assert client.get(url, headers={"If-None-Match": "*"}).status_code == 410  # removed: never a 304


def test_if_none_match_takes_lists_weak_tags_and_the_wildcard() -> None:
    assert etag_matches('"a", W/"b"', '"b"') and etag_matches("*", '"a"') and etag_matches('"a"', '"a"')
    assert not etag_matches(None, '"a"') and not etag_matches('"ab"', '"a"') and not etag_matches("", '"a"')
