"""Monitoring while the app runs: read-only SQL over the monitoring views and Parquet snapshots.

A user sees their own rows; the users named with `--admin` see every user's. The store runs the
query in its sandbox (learning/store/monitoring_sql.py); here the answer becomes plain JSON
values, which the REST route sends as they are and the Stats tab shows as a table.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Collection
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from draftgrid.errors import InvalidRequest
from draftgrid.schemas import MonitoringQueryRequest
from learning.store.monitoring_sql import MonitoringQueryError
from learning.store.preference_store import PreferenceStore


def jsonable(value: Any) -> Any:
    """A DuckDB value as JSON can carry it: NaN and infinities as text, BLOBs as base64, times in
    ISO 8601, decimals as text (exact), MAP keys as text."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    return str(value)  # UUID, INTERVAL, ...


class Monitoring:
    """Monitoring queries and snapshots, each scoped to the caller's rows unless an admin asks."""

    def __init__(self, store: PreferenceStore, admins: Collection[str]) -> None:
        self._store = store
        self._admins = frozenset(admins)

    def _scope(self, user_id: str) -> str | None:
        return None if user_id in self._admins else user_id

    def query(self, user_id: str, req: MonitoringQueryRequest) -> dict[str, Any]:
        """`{"columns", "rows", "truncated", "max_rows", "seconds", "scope"}`; a refused or failed
        query is a 422 with DuckDB's (or the sandbox's) reason."""
        try:
            result = self._store.monitoring_query(req.sql, self._scope(user_id), max_rows=req.max_rows)
        except MonitoringQueryError as exc:
            raise InvalidRequest(str(exc)) from exc
        return {"columns": result.columns, "rows": jsonable(result.rows), "truncated": result.truncated,
                "max_rows": req.max_rows, "seconds": round(result.seconds, 4),
                "scope": "all users" if self._scope(user_id) is None else "own rows"}

    def snapshot(self, user_id: str) -> bytes:
        """The facts and views the user may see, as Parquet files in a zip."""
        return self._store.snapshot(self._scope(user_id))
