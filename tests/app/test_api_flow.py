"""The REST contract on a real app + simulator: the whole flow, and every bad input refused cleanly."""

from __future__ import annotations

import threading
from collections.abc import Callable

import httpx
import pytest

from draftgrid.launch import RunningApp
from learning.store.counting_write_path import FAVOURITE_WEIGHT
from tests.app.conftest import wait_done

BATCH_FIELDS = {"batch_id", "total_count", "gpu_distribution", "checkpoint_distribution", "loras", "strategy"}
IMAGE_FIELDS = {"image_id", "status", "url", "checkpoint", "loras", "seed", "server", "selected", "error"}


def table_counts(app: RunningApp) -> tuple[int, int, int]:
    con = app.backend.store
    return (len(con.recent_batches("local", limit=10_000)),
            sum(len(con.batch_snapshot(b.batch_id).images) for b in con.recent_batches("local", limit=10_000)),
            sum(v["total"] for v in con.arm_totals("local", "checkpoint").values()))


def test_full_flow_generate_select_stats_refine(client: httpx.Client, generate: Callable[..., dict]) -> None:
    before = client.get("/api/checkpoints/stats").json()
    ticket = generate(prompt="photorealistic portrait of a fisherman", count=20, model_family="sd15")
    assert BATCH_FIELDS <= set(ticket)
    assert ticket["total_count"] == 20 and sum(ticket["checkpoint_distribution"].values()) == 20
    assert sum(ticket["gpu_distribution"].values()) == 20 and len(ticket["gpu_distribution"]) == 2
    assert {"mode", "recommended", "confidence"} <= set(ticket["strategy"])

    batch = wait_done(client, ticket["batch_id"])
    assert batch["status"] == "done" and len(batch["images"]) == 20
    for image in batch["images"]:
        assert IMAGE_FIELDS <= set(image) and image["status"] == "done" and image["server"]
        png = client.get(image["url"])
        assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    assert {i["checkpoint"] for i in batch["images"]} == set(ticket["checkpoint_distribution"])

    picks = [i["image_id"] for i in batch["images"][:3]]
    fb = client.post("/api/feedback", json={"batch_id": ticket["batch_id"], "selected": picks})
    assert fb.status_code == 200 and set(fb.json()["selected"]) == set(picks)
    again = client.post("/api/feedback", json={"batch_id": ticket["batch_id"], "selected": picks})
    assert again.json()["changed"] is False  # idempotent

    stats = client.get("/api/checkpoints/stats").json()
    for name, row in stats.items():
        assert set(row) == {"selected", "total", "selection_rate"}
    gained_total = sum(r["total"] for r in stats.values()) - sum(r["total"] for r in before.values())
    gained_sel = sum(r["selected"] for r in stats.values()) - sum(r["selected"] for r in before.values())
    assert (gained_total, gained_sel) == (20, 3)

    refined = client.post("/api/generate/batch", json={"prompt": "", "parent_image_ids": picks, "count": 3,
                                                       "session_id": "s1"})
    assert refined.status_code == 200, refined.text
    rbatch = wait_done(client, refined.json()["batch_id"])
    assert rbatch["status"] == "done" and rbatch["tier"] == "standard" and len(rbatch["images"]) == 3
    assert rbatch["parent_batch_id"] == ticket["batch_id"]
    parents = {i["image_id"]: i for i in batch["images"]}
    for image in rbatch["images"]:
        parent = parents[image["parent_image_id"]]
        assert image["seed"] == parent["seed"] and image["width"] > parent["width"]
    chain = client.get(f"/api/images/{rbatch['images'][0]['image_id']}/lineage").json()
    assert [c["image_id"] for c in chain][-1] == rbatch["images"][0]["image_id"] and len(chain) == 2

    # selecting in the refined batch moves the numbers again
    client.post("/api/feedback", json={"batch_id": rbatch["batch_id"],
                                       "selected": [rbatch["images"][0]["image_id"]]})
    after = client.get("/api/checkpoints/stats").json()
    assert sum(r["selected"] for r in after.values()) == sum(r["selected"] for r in stats.values()) + 1


def test_reject_all_counts_every_image_as_shown_and_none_selected(client: httpx.Client,
                                                                   generate: Callable[..., dict]) -> None:
    ticket = generate(prompt="watercolor fox in a forest", count=6)
    wait_done(client, ticket["batch_id"])
    before = client.get("/api/checkpoints/stats").json()
    r = client.post("/api/feedback", json={"batch_id": ticket["batch_id"], "reject_all": True})
    assert r.status_code == 200 and len(r.json()["rejected"]) == 6
    after = client.get("/api/checkpoints/stats").json()
    assert sum(v["total"] for v in after.values()) - sum(v["total"] for v in before.values()) == 6
    assert sum(v["selected"] for v in after.values()) == sum(v["selected"] for v in before.values())


@pytest.mark.parametrize("body", [
    {"prompt": ""}, {"prompt": "   "}, {"prompt": "x" * 2001}, {"prompt": "cat", "count": 0},
    {"prompt": "cat", "count": 1_000_000}, {"prompt": "cat", "tier": "ultra"},
    {"prompt": "cat", "model_family": "sd4"}, {"prompt": "cat", "aspect_ratio": "7:3"},
    {"prompt": "cat", "sampler_name": "no_such_sampler"}, {"prompt": "cat", "scheduler": "nope"},
    {"prompt": "cat", "parent_image_ids": ["not-an-image"]}, {"prompt": "cat <lora:no_such_lora:0.7>"},
    {"prompt": "cat", "count": "many"}, {"prompt": "a\x00b"}, [1, 2], "just a string",
    {"prompt": "cat", "count": True}, {"prompt": "cat", "count": 2.5}, {"prompt": "<lora:anime_style_v2:0.8>"},
])
def test_bad_generate_input_is_422_and_writes_nothing(client: httpx.Client, app: RunningApp, body: object) -> None:
    before = table_counts(app)
    r = client.post("/api/generate/batch", json=body)
    assert r.status_code == 422, r.text
    assert isinstance(r.json()["detail"], str) and r.json()["detail"]
    assert table_counts(app) == before


def test_malformed_json_is_422(client: httpx.Client) -> None:
    r = client.post("/api/generate/batch", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "JSON" in r.json()["detail"]


def test_bad_feedback_is_refused_before_anything_is_written(client: httpx.Client, app: RunningApp,
                                                            generate: Callable[..., dict]) -> None:
    ticket = generate(count=2)
    batch = wait_done(client, ticket["batch_id"])
    good = batch["images"][0]["image_id"]
    before = table_counts(app)
    r = client.post("/api/feedback", json={"batch_id": ticket["batch_id"], "selected": [good, "bogus"]})
    assert r.status_code == 422 and "bogus" in r.json()["detail"]
    assert client.get(f"/api/batches/{ticket['batch_id']}").json()["images"][0]["selected"] is False
    assert table_counts(app) == before
    assert client.post("/api/feedback", json={"batch_id": "nope", "selected": []}).status_code == 404


def test_every_answer_says_how_long_the_app_took(client: httpx.Client) -> None:
    """`Server-Timing: app;dur=<ms>` on answers and on refusals: what the load bench splits latency with."""
    for r in (client.get("/api/gpus"), client.get("/api/batches/does-not-exist"),
              client.post("/api/feedback", content=b"[", headers={"content-type": "application/json"})):
        name, dur = r.headers["server-timing"].split(";dur=")
        assert name == "app" and 0 < float(dur) < 10_000, r.headers["server-timing"]


def test_unknown_ids_are_404(client: httpx.Client) -> None:
    assert client.get("/api/batches/does-not-exist").status_code == 404
    assert client.get("/api/images/does-not-exist").status_code == 404
    assert client.get("/api/images/..%2F..%2Fetc%2Fpasswd").status_code == 404


def test_read_routes(client: httpx.Client) -> None:
    gpus = client.get("/api/gpus").json()
    assert len(gpus) == 2 and all(g["online"] and g["device"] for g in gpus)
    loras = client.get("/api/loras").json()
    by_name = {l["name"]: l for l in loras}
    assert by_name["cyberpunk_neon_xl.safetensors"]["base_model"] == "sdxl"
    assert by_name["anime_style_v2.safetensors"]["base_model"] == "sd15"
    rec = client.get("/api/recommendation", params={"prompt": "anime girl", "model_family": "sd15",
                                                    "tier": "standard"}).json()
    assert {"recommended", "confidence", "scores", "checkpoints_to_test", "strategy"} <= set(rec)
    assert client.get("/api/recommendation", params={"prompt": "x", "tier": "nope"}).status_code == 422
    assert isinstance(client.get("/api/keywords/stats").json(), list)
    assert isinstance(client.get("/api/loras/stats").json(), dict)


def test_export_then_import_preferences(client: httpx.Client, generate: Callable[..., dict]) -> None:
    ticket = generate(prompt="anime girl with a sword", count=4)
    batch = wait_done(client, ticket["batch_id"])
    client.post("/api/feedback", json={"batch_id": ticket["batch_id"], "selected": [batch["images"][0]["image_id"]]})
    for fmt in ("csv", "parquet"):
        exported = client.get("/api/preferences/export", params={"format": fmt})
        assert exported.status_code == 200 and len(exported.content) > 0
        imported = client.post("/api/preferences/import", params={"format": fmt}, content=exported.content)
        assert imported.status_code == 200 and imported.json()["imported_rows"] > 0
    bad = client.post("/api/preferences/import", params={"format": "csv"}, content=b"garbage,\x00\x01")
    assert bad.status_code == 422


def test_two_tabs_clicking_at_once_lose_nothing(client: httpx.Client, app: RunningApp,
                                                generate: Callable[..., dict]) -> None:
    ticket = generate(count=16)
    images = [i["image_id"] for i in wait_done(client, ticket["batch_id"])["images"]]
    base = app.local_url.rstrip("/")
    errors: list[str] = []

    def tab(ids: list[str]) -> None:
        with httpx.Client(base_url=base, timeout=30) as c:
            for image_id in ids:
                r = c.post("/api/feedback", json={"batch_id": ticket["batch_id"], "selected": [image_id]})
                if r.status_code != 200:
                    errors.append(r.text)

    threads = [threading.Thread(target=tab, args=(images[k::2],)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    final = client.get(f"/api/batches/{ticket['batch_id']}").json()
    assert all(i["selected"] for i in final["images"])
    assert app.backend.store.aggregates_equal_rebuild()


def test_simulator_banner_is_in_the_ui(client: httpx.Client) -> None:
    config = client.get("/config").json()
    assert "dg-sim-banner" in str(config) and "Simulated GPUs" in str(config)
    assert all(g["simulated"] for g in client.get("/api/gpus").json())


def test_keyword_stats_show_the_words_the_user_typed(client: httpx.Client, generate: Callable[..., dict]) -> None:
    ticket = generate(prompt="cherry blossoms at night", count=3)
    batch = wait_done(client, ticket["batch_id"])
    client.post("/api/feedback", json={"batch_id": ticket["batch_id"], "selected": [batch["images"][0]["image_id"]]})
    rows = client.get("/api/keywords/stats", params={"keyword": "cherri"}).json()
    assert rows and {"keyword", "label", "checkpoint", "selected", "total", "selection_rate"} <= set(rows[0])
    assert {r["label"] for r in rows if r["keyword"] == "cherri"} == {"cherry"}
    assert sum(r["selected"] for r in rows if r["keyword"] == "cherri") == 1


def test_favourite_selects_counts_double_and_is_idempotent(client: httpx.Client,
                                                           generate: Callable[..., dict]) -> None:
    ticket = generate(prompt="oil painting of a lighthouse", count=3)
    batch = wait_done(client, ticket["batch_id"])
    image_id = batch["images"][0]["image_id"]
    before = client.get("/api/checkpoints/stats").json()
    r = client.put(f"/api/images/{image_id}/favourite")
    assert r.status_code == 200 and r.json()["favourite"] and r.json()["selected"] and r.json()["changed"]
    again = client.put(f"/api/images/{image_id}/favourite")
    assert again.status_code == 200 and again.json()["changed"] is False and again.json()["favourite"]
    after = client.get("/api/checkpoints/stats").json()
    gained = sum(v["selected"] for v in after.values()) - sum(v["selected"] for v in before.values())
    assert gained == FAVOURITE_WEIGHT  # one favourite counts as FAVOURITE_WEIGHT selections
    images = {i["image_id"]: i for i in client.get(f"/api/batches/{ticket['batch_id']}").json()["images"]}
    assert images[image_id]["favourite"] and images[image_id]["selected"]
    assert not any(i["favourite"] for k, i in images.items() if k != image_id)
    off = client.delete(f"/api/images/{image_id}/favourite")
    assert off.status_code == 200 and not off.json()["favourite"] and off.json()["selected"]
    assert client.delete(f"/api/images/{image_id}/favourite").json()["changed"] is False
    images = {i["image_id"]: i for i in client.get(f"/api/batches/{ticket['batch_id']}").json()["images"]}
    assert not images[image_id]["favourite"] and images[image_id]["selected"]  # stays selected


def test_favourite_of_an_unknown_image_is_404(client: httpx.Client) -> None:
    for method in (client.put, client.delete):
        r = method("/api/images/no-such-image/favourite")
        assert r.status_code == 404 and "no-such-image" in r.json()["detail"]
