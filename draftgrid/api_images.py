"""The image routes, built like those of `api.py` (same credentials, 404 for unknown or another
user's ids, 410 once the retention policy removed the file):

* `GET /api/images/{id}` → the PNG;
* `GET /api/images/{id}/thumbnail` → a small PNG (at most `THUMB_MAX` on a side, no selection mark),
  what the History tab's gallery shows.

An image never changes under its id, so both answer with an `ETag` and
`Cache-Control: private, max-age=31536000, immutable` (private: they are one user's), and a request
whose `If-None-Match` names the ETag gets a 304 without the bytes — after the same ownership and
retention checks, so a removed image is still 410 and another user's still 404.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from draftgrid.service import DraftGridService
from draftgrid.thumbnails import THUMB_MAX

IMMUTABLE = "private, max-age=31536000, immutable"


def image_etag(image_id: str, variant: str = "") -> str:
    """The strong ETag of an image id (and variant: the thumbnail's names its size, so a change of
    size is a new tag)."""
    return f'"{image_id}{variant}"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an `If-None-Match` header names `etag` (weak comparison, as RFC 9110 asks for it)."""
    if not if_none_match:
        return False
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or etag in tags


async def _immutable(request: Request, etag: str, check: Callable[[], None], read: Callable[[], bytes]) -> Response:
    headers = {"ETag": etag, "Cache-Control": IMMUTABLE}
    if etag_matches(request.headers.get("if-none-match"), etag):
        await run_in_threadpool(check)  # 404 / 410 as without the header
        return Response(status_code=304, headers=headers)
    return Response(await run_in_threadpool(read), media_type="image/png", headers=headers)


def image_routes(router: APIRouter, service: DraftGridService, User: Any) -> None:  # noqa: N803
    """Add the image routes to `router` (its prefix /api and credentials apply)."""

    @router.get("/images/{image_id}")
    async def image(image_id: str, request: Request, user: str = User) -> Any:
        return await _immutable(request, image_etag(image_id), lambda: service.check_image(user, image_id),
                                lambda: service.image_png(user, image_id))

    @router.get("/images/{image_id}/thumbnail")
    async def thumbnail(image_id: str, request: Request, user: str = User) -> Any:
        return await _immutable(request, image_etag(image_id, f".t{THUMB_MAX}"),
                                lambda: service.check_image(user, image_id),
                                lambda: service.thumbnail_png(user, image_id))
