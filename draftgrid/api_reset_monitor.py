"""The REST routes of resets (with undo) and of monitoring, next to those of `api.py` and built
the same way: same credentials, bodies validated by the shared pydantic models (readable 422),
unknown or another user's ids 404, the sync service run in FastAPI's thread pool.

* `POST /api/preferences/reset` `{"keyword"?}` → `{"reset_id", "keyword", "rows", "changed"}`
  (`reset_id` null and `changed` false when nothing was learnt there: nothing recorded);
* `POST /api/preferences/reset/{reset_id}/undo` → `{"reset_id", "keyword", "rows", "undone",
  "changed"}` (an undo of an undone reset changes nothing: `changed` false);
* `GET /api/preferences/resets` → the caller's resets, newest first;
* `POST /api/monitoring/query` `{"sql", "max_rows"?}` → `{"columns", "rows", "truncated",
  "max_rows", "seconds", "scope"}`;
* `GET /api/monitoring/snapshot` → a zip of Parquet files (`facts/…`, `views/…`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from draftgrid.api import ServiceErrorRoute, parse_body
from draftgrid.schemas import MonitoringQueryRequest, ResetRequest
from draftgrid.service import DraftGridService
from learning.models import ResetResult


def _reset_json(result: ResetResult) -> dict[str, Any]:
    return {"reset_id": result.reset_id, "keyword": result.keyword, "rows": result.rows,
            "undone": result.undone, "changed": result.changed}


def build_reset_monitor_router(service: DraftGridService,
                               current_user: Callable[[Request], Awaitable[str]]) -> APIRouter:
    router = APIRouter(prefix="/api", dependencies=[Depends(current_user)], route_class=ServiceErrorRoute)
    User = Depends(current_user)
    call = run_in_threadpool

    @router.post("/preferences/reset")
    async def reset(request: Request, user: str = User) -> Any:
        req = await parse_body(request, ResetRequest)
        return _reset_json(await call(service.reset_preferences, user, req))

    @router.post("/preferences/reset/{reset_id}/undo")
    async def undo(reset_id: str, user: str = User) -> Any:
        return _reset_json(await call(service.undo_reset, user, reset_id))

    @router.get("/preferences/resets")
    async def resets(user: str = User) -> Any:
        return [{"reset_id": r.reset_id, "keyword": r.keyword, "created_at": r.created_at.isoformat(),
                 "undone_at": r.undone_at.isoformat() if r.undone_at else None}
                for r in await call(service.resets, user)]

    @router.post("/monitoring/query")
    async def query(request: Request, user: str = User) -> Any:
        req = await parse_body(request, MonitoringQueryRequest)
        return await call(service.monitoring_query, user, req)

    @router.get("/monitoring/snapshot")
    async def snapshot(user: str = User) -> Any:
        return Response(await call(service.monitoring_snapshot, user), media_type="application/zip",
                        headers={"Content-Disposition": 'attachment; filename="draftgrid-snapshot.zip"'})

    return router
