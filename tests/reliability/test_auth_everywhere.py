"""Under --auth nothing answers with data without credentials, and users never see each other.

The REST routes are enumerated from the running FastAPI app (a route added later is covered
without touching this file); Gradio's own file, queue and call routes are attacked directly; and
a logged-in user aiming at another user's ids gets 404s — the same answer as for ids that never
existed, so ids do not leak.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from gradio_client import Client

from draftgrid.launch import RunningApp
from tests.reliability.conftest import api, start_app
from tests.reliability.test_hostile_input import api_routes, fill
from tests.reliability.test_malicious_server import wait_settled

ANN = ("ann", "ann-pass")
BOB = ("bob", "bob-pass")
NEVER = "0" * 32  # an id that never existed


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    running = start_app(tmp_path_factory.mktemp("auth"), auth=(ANN, BOB))
    yield running
    running.close()


@pytest.fixture(scope="module")
def ann_batch(app: RunningApp) -> dict[str, Any]:
    """A finished batch of ann's with one selected image, and the thumbnail the UI would serve."""
    with api(app, ANN) as c:
        ticket = c.post("/api/generate/batch", json={"prompt": "secret garden of ann", "count": 2}).json()
        wait_settled(app, ticket["batch_id"], user=ANN[0])
        batch = c.get(f"/api/batches/{ticket['batch_id']}").json()
        image_id = batch["images"][0]["image_id"]
        assert c.post("/api/feedback", json={"batch_id": batch["batch_id"], "selected": [image_id]}).status_code == 200
    service = app.backend.service
    thumb, _ = service.gallery_of(service.batch_view(ANN[0], batch["batch_id"]))[0]
    return {"batch_id": batch["batch_id"], "image_id": image_id, "thumb": thumb}


def leaks(response: httpx.Response, ann_batch: dict[str, Any]) -> bool:
    body = response.content
    return any(secret.encode() in body for secret in (ann_batch["batch_id"], ann_batch["image_id"], "secret garden"))


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


STRANGERS = {
    "no credentials": {},
    "wrong password": basic("ann", "nope"),
    "unknown user": basic("eve", "ann-pass"),
    "malformed basic": {"Authorization": "Basic !!!"},
    "bearer": {"Authorization": "Bearer ann-pass"},
    "forged cookie": {"Cookie": "access-token-x=ann; access-token-unsecure-x=ann"},
}


@pytest.mark.parametrize("stranger", list(STRANGERS))
def test_no_rest_route_answers_without_credentials(app: RunningApp, ann_batch: dict[str, Any], stranger: str) -> None:
    routes = api_routes(app)
    assert len(routes) >= 14
    with api(app) as c:
        for method, template in routes:
            for ident in (ann_batch["batch_id"], ann_batch["image_id"]):
                r = c.request(method, fill(template, ident), headers=STRANGERS[stranger],
                              content=json.dumps({"batch_id": ann_batch["batch_id"], "prompt": "x"}))
                assert r.status_code == 401, (stranger, method, template, r.status_code)
                assert not leaks(r, ann_batch)


def test_gradio_files_queue_and_calls_need_credentials(app: RunningApp, ann_batch: dict[str, Any]) -> None:
    thumb = ann_batch["thumb"]
    assert Path(thumb).exists()
    join = {"data": [ann_batch["batch_id"]], "fn_index": 0, "session_hash": "eve", "event_data": None}
    with api(app) as c:
        attempts = [
            c.get(f"/gradio_api/file={thumb}"),
            c.get(f"/gradio_api/file={Path(thumb).resolve()}"),
            c.get("/config"),
            c.get("/gradio_api/info"),
            c.post("/gradio_api/queue/join", json=join),
            c.post("/gradio_api/call/open_batch", json={"data": [ann_batch["batch_id"]]}),
            c.post("/gradio_api/run/open_batch", json={"data": [ann_batch["batch_id"]]}),
            c.post("/gradio_api/api/open_batch", json={"data": [ann_batch["batch_id"]]}),
        ]
    for r in attempts:
        assert r.status_code in (401, 403, 404, 405), (r.request.url, r.status_code, r.text[:200])
        assert not leaks(r, ann_batch), r.request.url
        assert not r.headers.get("content-type", "").startswith("image/"), r.request.url


def test_another_user_gets_404s_like_for_ids_that_never_existed(app: RunningApp, ann_batch: dict[str, Any]) -> None:
    batch_id, image_id = ann_batch["batch_id"], ann_batch["image_id"]
    with api(app, BOB) as bob:
        for template in ("/api/batches/{}", "/api/images/{}", "/api/images/{}/lineage"):
            for ident in (batch_id, image_id):
                mine, never = bob.get(template.format(ident)), bob.get(template.format(NEVER))
                assert mine.status_code == never.status_code == 404, template
                assert mine.json()["detail"].replace(ident, NEVER) == never.json()["detail"]
        assert bob.post(f"/api/batches/{batch_id}/cancel").status_code == 404
        for method in (bob.put, bob.delete):  # favourites: another user's image looks unknown
            mine, never = method(f"/api/images/{image_id}/favourite"), method(f"/api/images/{NEVER}/favourite")
            assert mine.status_code == never.status_code == 404
        for body in ({"batch_id": batch_id, "selected": [image_id]}, {"batch_id": batch_id, "reject_all": True}):
            r = bob.post("/api/feedback", json=body)
            assert r.status_code == 404 and "secret" not in r.text, r.text
        refine = bob.post("/api/generate/batch", json={"prompt": "", "parent_image_ids": [image_id]})
        never = bob.post("/api/generate/batch", json={"prompt": "", "parent_image_ids": [NEVER]})
        assert refine.status_code == never.status_code and refine.status_code in (404, 422)
        assert refine.json()["detail"].replace(image_id, NEVER) == never.json()["detail"]
        export = bob.get("/api/preferences/export")
        assert export.status_code == 200 and b"secret" not in export.content and b"garden" not in export.content
        assert sum(v["selected"] for v in bob.get("/api/checkpoints/stats").json().values()) == 0
        assert bob.get("/api/history").json() == {"total": 0, "limit": 50, "offset": 0, "images": []}
    with api(app, ANN) as ann:  # ann's own data is untouched by bob's attempts
        assert image_id in {i["image_id"] for i in ann.get("/api/history").json()["images"]}
        batch = ann.get(f"/api/batches/{batch_id}").json()
        assert batch["status"] == "done" and [i["selected"] for i in batch["images"]].count(True) == 1
        assert b"garden" in ann.get("/api/preferences/export").content


def test_gradio_events_of_another_user_show_no_data(app: RunningApp, ann_batch: dict[str, Any]) -> None:
    bob = Client(app.local_url, auth=BOB, verbose=False)
    try:
        out = bob.predict(ann_batch["batch_id"], api_name="/open_batch")
    except Exception as exc:  # an error answer is as good as an empty one: no data
        out = str(exc)
    text = json.dumps(out, default=str)
    assert ann_batch["image_id"] not in text and "secret garden" not in text
    assert "not found" in text or "not in the list of choices" in text, text[:300]
