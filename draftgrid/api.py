"""The REST API, added to Gradio's own FastAPI app so `share=True` links serve it too.

Bodies and query strings are validated with the same pydantic models as the UI and refused with
a readable one-line `detail` (422); unknown or foreign ids are 404; an image the retention policy
removed is 410; no online server is 503.
Handlers run the sync service in FastAPI's thread pool so a slow call never blocks the server.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import asdict
from typing import Any, Literal, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.routing import APIRoute
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from draftgrid.api_images import image_routes
from draftgrid.errors import InvalidRequest, ServiceError
from draftgrid.preference_rules import SUBJECT_FIELDS
from draftgrid.schemas import (DEFAULT_FAMILY, Family, FeedbackRequest, GenerateRequest, HistoryQuery, RulesRequest,
                               SharingRequest, readable_errors)
from draftgrid.service import DraftGridService
from learning.models import Tier, RuleKind

M = TypeVar("M", bound=BaseModel)
MAX_IMPORT_BYTES = 50 * 1024 * 1024


class RecommendationQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")
    prompt: str = Field(min_length=1, max_length=2000)
    model_family: Family = DEFAULT_FAMILY
    tier: Tier = "standard"
    negative_prompt: str = Field(default="", max_length=2000)


class FormatQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")
    format: Literal["csv", "parquet"] = "csv"


class StatsQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")
    scope: Literal["user", "global"] = "user"
    keyword: str | None = Field(default=None, max_length=200)


async def parse_body(request: Request, model: type[M]) -> M:
    """The request's JSON object validated by `model`, or a readable 422."""
    raw = await request.body()
    try:
        data = json.loads(raw or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: [[[[...
        raise InvalidRequest(f"body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidRequest("body must be a JSON object")
    try:  # a lone "\ud800" escape is valid JSON but no text: DuckDB and the JSON answer cannot encode it
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRequest("body contains an unpaired UTF-16 surrogate (\\ud800-\\udfff); send valid Unicode") from exc
    return parse_model(model, data)


def parse_model(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequest(readable_errors(exc)) from exc


def parse_query(request: Request, model: type[M]) -> M:
    return parse_model(model, dict(request.query_params))


class ServiceErrorRoute(APIRoute):
    """Turns a `ServiceError` into its status with a readable `detail`, and tells the caller how long
    the app spent on the request (`Server-Timing: app;dur=<ms>`, shown by browsers' dev tools), so a
    slow answer can be told apart from a slow network or a busy client.

    A route class rather than `app.add_exception_handler`: the routes are added to Gradio's app
    after it started, when its exception middleware is already built.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            start = time.perf_counter()
            try:
                response = await handler(request)
            except ServiceError as exc:
                response = JSONResponse({"detail": str(exc)}, status_code=exc.status_code)
            response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - start) * 1000:.1f}"
            return response

        return guarded


def build_router(service: DraftGridService, current_user: Callable[[Request], Awaitable[str]]) -> APIRouter:
    """All REST routes; each resolves the caller's user first (401 without credentials under --auth)."""
    router = APIRouter(prefix="/api", dependencies=[Depends(current_user)], route_class=ServiceErrorRoute)
    User = Depends(current_user)
    call = run_in_threadpool  # the service is sync and may wait on the pool's loop

    @router.post("/generate/batch")
    async def generate(request: Request, user: str = User) -> Any:
        req = await parse_body(request, GenerateRequest)
        return (await call(service.generate, user, req)).as_json()

    @router.get("/families")
    async def families() -> Any:
        return {"families": await call(service.model_families)}

    @router.get("/batches/{batch_id}")
    async def batch(batch_id: str, user: str = User) -> Any:
        # most polls find a current cached view: answer on the loop, the thread pool only for a read
        view = service.current_batch_view(user, batch_id) or await call(service.batch_view, user, batch_id)
        return Response(view.json_bytes(), media_type="application/json")

    @router.post("/batches/{batch_id}/cancel")
    async def cancel(batch_id: str, user: str = User) -> Any:
        await call(service.cancel, user, batch_id)
        return {"batch_id": batch_id, "cancelled": True}

    @router.post("/batches/{batch_id}/retry")
    async def retry(batch_id: str, user: str = User) -> Any:
        return {**(await call(service.retry_failed, user, batch_id)).as_json(), "retry_of": batch_id}

    @router.get("/history")
    async def history(request: Request, user: str = User) -> Any:
        q = parse_query(request, HistoryQuery)
        page = await call(service.history, user, q.to_filter())
        return {"total": page.total, "limit": page.limit, "offset": page.offset,
                "images": [{**asdict(row), "loras": list(row.loras), "created_at": row.created_at.isoformat(),
                            "url": f"/api/images/{row.image_id}"} for row in page.rows]}

    @router.get("/images/{image_id}/lineage")
    async def lineage(image_id: str, user: str = User) -> Any:
        return await call(service.lineage, user, image_id)

    def favourite_json(image_id: str, result: Any) -> dict[str, Any]:
        return {"image_id": image_id, "batch_id": result.batch_id,
                "favourite": image_id in result.favourites, "selected": image_id in result.selected,
                "changed": result.changed}

    @router.put("/images/{image_id}/favourite")
    async def put_favourite(image_id: str, user: str = User) -> Any:
        return favourite_json(image_id, await call(service.favourite, user, image_id, True))

    @router.delete("/images/{image_id}/favourite")
    async def delete_favourite(image_id: str, user: str = User) -> Any:
        return favourite_json(image_id, await call(service.favourite, user, image_id, False))

    @router.post("/feedback")
    async def feedback(request: Request, user: str = User) -> Any:
        req = await parse_body(request, FeedbackRequest)
        result = await call(service.feedback, user, req)
        return {"batch_id": result.batch_id, "selected": sorted(result.selected),
                "rejected": sorted(result.rejected), "reviewed": result.reviewed, "changed": result.changed}

    @router.get("/checkpoints/stats")
    async def checkpoint_stats(request: Request, user: str = User) -> Any:
        return await call(service.arm_totals, user, "checkpoint", parse_query(request, StatsQuery).scope)

    @router.get("/loras/stats")
    async def lora_stats(request: Request, user: str = User) -> Any:
        return await call(service.arm_totals, user, "lora", parse_query(request, StatsQuery).scope)

    @router.get("/keywords/stats")
    async def keyword_stats(request: Request, user: str = User) -> Any:
        q = parse_query(request, StatsQuery)
        return await call(service.keyword_stats, user, q.scope, q.keyword)

    @router.get("/recommendation")
    async def recommendation(request: Request, user: str = User) -> Any:
        q = parse_query(request, RecommendationQuery)
        rec = await call(service.recommendation, user, q.prompt, q.model_family, q.tier, q.negative_prompt)
        return {"recommended": rec.recommended, "confidence": rec.confidence, "scores": rec.scores,
                "checkpoints_to_test": rec.checkpoints_to_test, "allocation": rec.allocation,
                "strategy": {"mode": rec.mode, "message": rec.message, "policy": rec.policy},
                "next_stage": rec.next_stage, "evidence": rec.evidence, "crowd_prior": rec.crowd_prior,
                "settings": rec.settings}

    @router.get("/gpus")
    async def gpus() -> Any:
        return await call(service.gpus_json)

    @router.get("/loras")
    async def loras() -> Any:
        return await call(service.loras_json)

    @router.get("/preferences/export")
    async def export(request: Request, user: str = User) -> Any:
        fmt = parse_query(request, FormatQuery).format
        data = await call(service.export_preferences, user, fmt)
        media = "text/csv" if fmt == "csv" else "application/vnd.apache.parquet"
        return Response(data, media_type=media, headers={
            "Content-Disposition": f'attachment; filename="draftgrid-preferences.{fmt}"'})

    @router.post("/preferences/import")
    async def import_preferences(request: Request, user: str = User) -> Any:
        fmt = parse_query(request, FormatQuery).format
        data = await request.body()
        if not data or len(data) > MAX_IMPORT_BYTES:
            raise InvalidRequest(f"send the exported file as the request body (1 to {MAX_IMPORT_BYTES} bytes)")
        return {"imported_rows": await call(service.import_preferences, user, data, fmt)}

    @router.get("/preferences/sharing")
    async def sharing(user: str = User) -> Any:
        return (await call(service.sharing, user)).as_json()

    @router.put("/preferences/sharing")
    async def set_sharing(request: Request, user: str = User) -> Any:
        req = await parse_body(request, SharingRequest)
        return (await call(service.set_sharing, user, req.share)).as_json()

    image_routes(router, service, User)
    for path, kind in (("/loras/vetoes", "lora-veto"), ("/negative-suggestions/dismissed", "negative-dismissal")):
        _rule_routes(router, service, User, path, kind)
    return router


def _rule_routes(router: APIRouter, service: DraftGridService, User: Any, path: str, kind: RuleKind) -> None:  # noqa: N803
    """GET (the export) and PUT (the import: exactly these rules in force) of one kind of rule."""
    field = SUBJECT_FIELDS[kind]
    call = run_in_threadpool

    @router.get(path, name=f"get {kind}")
    async def get_rules(user: str = User) -> Any:
        return {"rules": await call(service.rules, user, kind)}

    @router.put(path, name=f"put {kind}")
    async def put_rules(request: Request, user: str = User) -> Any:
        req = await parse_body(request, RulesRequest)
        wanted = []
        for entry in req.rules:
            subject = getattr(entry, field)
            if subject is None:
                raise InvalidRequest(f"each rule needs a keyword and a {field}")
            wanted.append((entry.keyword, subject))
        return {"rules": await call(service.replace_rules, user, kind, wanted)}


def install_api(app: FastAPI, service: DraftGridService, current_user: Callable[[Request], Awaitable[str]]) -> None:
    """Add the REST routes to a running Gradio app; none of Gradio's own routes lives under /api/."""
    app.include_router(build_router(service, current_user))
