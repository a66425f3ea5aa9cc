"""One clock for stored timestamps: naive UTC, so files read the same in every time zone."""

from __future__ import annotations

from datetime import datetime, timezone


def utc_now() -> datetime:
    """Now as a naive UTC datetime (DuckDB TIMESTAMP has no zone)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)
