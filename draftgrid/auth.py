"""Who is calling: the same credentials protect the Gradio UI and the REST API.

Gradio's `auth=` guards only its own routes (custom routes answer 200 without credentials), so
every REST route depends on `current_user`, which accepts either Gradio's login cookie (the
browser, after the login form) or HTTP Basic with the same user:password pairs (scripts).
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import HTTPException, Request

from learning.models import DEFAULT_USER


def _basic_credentials(header: str) -> tuple[str, str] | None:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        user, sep, password = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return (user, password) if sep else None


def check_password(credentials: Mapping[str, str], user: str, password: str) -> bool:
    """Constant-time comparison; an unknown user costs the same as a wrong password."""
    expected = credentials.get(user, "")
    ok = secrets.compare_digest(expected.encode(), password.encode())
    return ok and user in credentials


def make_current_user(app: Any, credentials: Mapping[str, str]) -> Callable[[Request], Awaitable[str]]:
    """A FastAPI dependency resolving the request's user (or refusing it with 401).

    `async` although it awaits nothing: FastAPI runs a plain `def` dependency in its thread pool,
    a round trip from the event loop and back on every REST request."""

    async def current_user(request: Request) -> str:
        if not credentials:
            return DEFAULT_USER
        cookie_id = getattr(app, "cookie_id", "")
        token = request.cookies.get(f"access-token-{cookie_id}") or request.cookies.get(
            f"access-token-unsecure-{cookie_id}")
        user = getattr(app, "tokens", {}).get(token) if token else None
        if user in credentials:
            return str(user)
        pair = _basic_credentials(request.headers.get("authorization", ""))
        if pair and check_password(credentials, *pair):
            return pair[0]
        raise HTTPException(status_code=401, detail="authentication required",
                            headers={"WWW-Authenticate": 'Basic realm="DraftGrid"'})

    return current_user
