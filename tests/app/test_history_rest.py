"""GET /api/history: the caller's earlier images, filtered and paged, validated like every route."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.app.conftest import wait_done


def test_history_filters_pages_and_only_shows_the_callers_images(client: httpx.Client,
                                                                  generate: Callable[..., dict]) -> None:
    first = wait_done(client, generate(prompt="a lighthouse in a storm", count=4)["batch_id"])
    second = wait_done(client, generate(prompt="a red fox in the snow", count=3)["batch_id"])
    pick = first["images"][1]["image_id"]
    assert client.post("/api/feedback", json={"batch_id": first["batch_id"], "selected": [pick]}).status_code == 200

    foxes = client.get("/api/history", params={"prompt": "RED FOX"}).json()
    assert foxes["total"] == 3 and {i["batch_id"] for i in foxes["images"]} == {second["batch_id"]}
    assert client.get("/api/history", params={"keyword": "lighthouses"}).json()["total"] >= 4  # stemmed
    selected = client.get("/api/history", params={"selected": "true", "prompt": "lighthouse in a storm"}).json()
    assert [i["image_id"] for i in selected["images"]] == [pick] and selected["images"][0]["selected"] is True
    row = selected["images"][0]
    assert row["url"] == f"/api/images/{pick}" and client.get(row["url"]).status_code == 200
    assert {"checkpoint", "loras", "seed", "tier", "status", "created_at", "prompt", "favourite"} <= set(row)
    assert client.put(f"/api/images/{pick}/favourite").status_code == 200
    hearts = client.get("/api/history", params={"favourite": "true"}).json()
    assert [i["image_id"] for i in hearts["images"]] == [pick] and hearts["images"][0]["favourite"] is True

    mine = client.get("/api/history", params={"prompt": "storm", "limit": 2}).json()
    rest = client.get("/api/history", params={"prompt": "storm", "limit": 2, "offset": 2}).json()
    ids = [i["image_id"] for i in mine["images"] + rest["images"]]
    assert mine["total"] == 4 and len(ids) == len(set(ids)) == 4  # pages neither overlap nor skip


def test_history_refuses_bad_queries_readably(client: httpx.Client) -> None:
    for params in ({"limit": 0}, {"limit": 10**6}, {"offset": -1}, {"tier": "ultra"}, {"since": "yesterday"},
                   {"since": "2026-02-01", "until": "2026-01-01"}, {"colour": "red"}, {"selected": "maybe"},
                   {"favourite": "often"}):
        response = client.get("/api/history", params=params)
        assert response.status_code == 422, (params, response.text)
        assert isinstance(response.json()["detail"], str) and response.json()["detail"]
