"""Resets with undo and monitoring over REST: bodies, 422 / 404 / 401, repeats, own rows unless an
admin asks, and a snapshot another process can open while the app runs."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import duckdb
import httpx
import pytest

from draftgrid.launch import RunningApp
from tests.app.conftest import start_app, wait_done

ANN = ("ann", "ann-pass")
BOB = ("bob", "bob-pass")
ROOT = ("root", "root-pass")  # started with --admin root
CARA = ("cara", "cara-pass")  # only the reset-everything test's: it wipes her counts
SEED_003 = "SELECT session_id, AVG(confidence) AS c FROM generation_logs GROUP BY session_id ORDER BY session_id"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    running = start_app(tmp_path_factory.mktemp("reset"), auth=(ANN, BOB, ROOT, CARA), admins=("root",))
    yield running
    running.close()


def client(app: RunningApp, auth: tuple[str, str] | None) -> httpx.Client:
    return httpx.Client(base_url=app.local_url.rstrip("/"), auth=auth, timeout=60)


def reviewed_batch(c: httpx.Client, prompt: str, session: str) -> dict:
    """A 4-image draft with its first image selected."""
    ticket = c.post("/api/generate/batch", json={"prompt": prompt, "count": 4, "session_id": session}).json()
    batch = wait_done(c, ticket["batch_id"])
    assert c.post("/api/feedback", json={"batch_id": ticket["batch_id"],
                                         "selected": [batch["images"][0]["image_id"]]}).status_code == 200
    return batch


def shown(c: httpx.Client, keyword: str | None = None) -> int:
    if keyword is None:
        return sum(v["total"] for v in c.get("/api/checkpoints/stats").json().values())
    return sum(row["total"] for row in c.get("/api/keywords/stats", params={"keyword": keyword}).json()
               if row["keyword"] == keyword)


def test_reset_a_keyword_then_everything_and_undo_both(app: RunningApp) -> None:
    with client(app, CARA) as cara:
        reviewed_batch(cara, "portraits of a lighthouse", "s1")
        assert shown(cara, "portrait") == 4 and shown(cara, "lighthous") == 4
        kw = cara.post("/api/preferences/reset", json={"keyword": "Portraits"})  # typed form → the stem
        assert kw.status_code == 200, kw.text
        body = kw.json()
        assert body["keyword"] == "portrait" and body["changed"] and body["rows"] > 0
        assert isinstance(body["reset_id"], int)
        assert shown(cara, "portrait") == 0 and shown(cara, "lighthous") == 4 and shown(cara) == 4

        everything = cara.post("/api/preferences/reset", json={}).json()
        assert everything["keyword"] is None and shown(cara) == 0 and shown(cara, "lighthous") == 0

        undo = cara.post(f"/api/preferences/reset/{everything['reset_id']}/undo").json()
        assert undo["undone"] and undo["changed"]
        assert shown(cara) == 4 and shown(cara, "portrait") == 0  # the keyword reset still holds
        again = cara.post(f"/api/preferences/reset/{everything['reset_id']}/undo")
        assert again.status_code == 200 and not again.json()["changed"]  # a repeat changes nothing
        cara.post(f"/api/preferences/reset/{body['reset_id']}/undo")
        assert shown(cara, "portrait") == 4
        listed = cara.get("/api/preferences/resets").json()
        assert [r["reset_id"] for r in listed] == [everything["reset_id"], body["reset_id"]]
        assert all(r["undone_at"] for r in listed)


def test_a_reset_of_nothing_records_nothing(app: RunningApp) -> None:
    with client(app, ANN) as ann:
        before = len(ann.get("/api/preferences/resets").json())
        body = ann.post("/api/preferences/reset", json={"keyword": "submarine"}).json()
        assert body == {"reset_id": None, "keyword": "submarin", "rows": 0, "undone": False, "changed": False}
        assert len(ann.get("/api/preferences/resets").json()) == before


@pytest.mark.parametrize("body", [{"keyword": ""}, {"keyword": "   "}, {"keyword": 3}, {"keyword": "*"},
                                  {"keyword": "x" * 201}, {"keyword": "a\x00b"}, {"everything": True}, []])
def test_bad_reset_bodies_are_422_and_write_nothing(app: RunningApp, body: object) -> None:
    with client(app, ANN) as ann:
        before = ann.get("/api/preferences/resets").json()
        r = ann.post("/api/preferences/reset", json=body)
        assert r.status_code == 422 and isinstance(r.json()["detail"], str), r.text
        assert ann.get("/api/preferences/resets").json() == before


def test_someone_elses_reset_is_404(app: RunningApp) -> None:
    with client(app, ANN) as ann, client(app, BOB) as bob:
        reviewed_batch(ann, "a red fox", "s2")
        reset = ann.post("/api/preferences/reset", json={"keyword": "fox"}).json()
        for reset_id in (reset["reset_id"], 99999999, "abc", "1" * 40):
            assert bob.post(f"/api/preferences/reset/{reset_id}/undo").status_code == 404
        assert bob.get("/api/preferences/resets").json() == []
        assert ann.post(f"/api/preferences/reset/{reset['reset_id']}/undo").json()["changed"]


def test_the_routes_need_credentials(app: RunningApp) -> None:
    with client(app, None) as anon:
        for method, path in [("POST", "/api/preferences/reset"), ("POST", "/api/preferences/reset/1/undo"),
                             ("GET", "/api/preferences/resets"), ("POST", "/api/monitoring/query"),
                             ("GET", "/api/monitoring/snapshot")]:
            assert anon.request(method, path, json={}).status_code == 401, path


def test_monitoring_query_shows_own_rows_and_all_rows_to_an_admin(app: RunningApp) -> None:
    with client(app, ANN) as ann, client(app, BOB) as bob, client(app, ROOT) as root:
        reviewed_batch(ann, "a green parrot", "ann-monitor")  # each test makes its own facts
        reviewed_batch(bob, "a blue whale", "bob-session")
        mine = ann.post("/api/monitoring/query", json={"sql": SEED_003})
        assert mine.status_code == 200, mine.text
        body = mine.json()
        assert body["columns"] == ["session_id", "c"] and body["scope"] == "own rows"
        assert "bob-session" not in [row[0] for row in body["rows"]] and body["rows"]
        everyone = root.post("/api/monitoring/query", json={"sql": SEED_003}).json()
        assert everyone["scope"] == "all users"
        assert {"bob-session", "ann-monitor"} <= {row[0] for row in everyone["rows"]}
        images = bob.post("/api/monitoring/query", json={
            "sql": "SELECT checkpoint, selected, created_at, loras FROM image_logs WHERE session_id = 'bob-session' "
                   "ORDER BY created_at"}).json()
        assert len(images["rows"]) == 4 and sum(row[1] for row in images["rows"]) == 1
        assert isinstance(images["rows"][0][2], str)  # times as ISO text


def test_monitoring_values_json_cannot_carry_are_sent_as_text(app: RunningApp) -> None:
    with client(app, ANN) as ann:
        r = ann.post("/api/monitoring/query", json={
            "sql": "SELECT 'nan'::DOUBLE AS n, 'inf'::DOUBLE AS i, '\\xAA\\xFF'::BLOB AS b, 1.5::DECIMAL(4,2) AS d, "
                   "INTERVAL 2 HOUR AS span, MAP {1: 'x'} AS m, uuid() IS NOT NULL AS u"})
        assert r.status_code == 200, r.text
        [row] = r.json()["rows"]
        assert row[:2] == ["nan", "inf"] and row[2] == "qv8=" and row[3] == "1.50" and row[5] == {"1": "x"}


@pytest.mark.parametrize(("body", "message"), [
    ({"sql": "PRAGMA database_list"}, "not PRAGMA"),
    ({"sql": "SELECT 1; SELECT 2"}, "exactly one statement"),
    ({"sql": "COPY generation_logs TO '/tmp/x.csv'"}, "not COPY"),
    ({"sql": "ATTACH 'other.duckdb'"}, "not ATTACH"),
    ({"sql": "INSTALL httpfs"}, "not LOAD"),
    ({"sql": "SELECT * FROM read_csv('/etc/passwd')"}, "disabled by configuration"),
    ({"sql": "SELECT * FROM batches"}, "does not exist"),
    ({"sql": "SELECT * FROM nowhere"}, "does not exist"),
    ({"sql": ""}, "sql"),
    ({"sql": "SELECT 1", "max_rows": 0}, "max_rows"),
    ({"sql": "SELECT 1", "max_rows": 5000}, "max_rows"),
    ({"sql": "SELECT 1", "database": "main"}, "database"),
    ({"sql": 1}, "sql"),
])
def test_refused_monitoring_queries_are_readable_422s(app: RunningApp, body: dict, message: str) -> None:
    with client(app, ANN) as ann:
        r = ann.post("/api/monitoring/query", json=body)
        assert r.status_code == 422 and message in r.json()["detail"], r.text


def test_monitoring_rows_are_limited(app: RunningApp) -> None:
    with client(app, ANN) as ann:
        body = ann.post("/api/monitoring/query", json={"sql": "SELECT * FROM range(2000)", "max_rows": 50}).json()
        assert len(body["rows"]) == 50 and body["truncated"] and body["max_rows"] == 50


def test_a_snapshot_is_parquet_that_duckdb_opens_while_the_app_runs(app: RunningApp, tmp_path: Path) -> None:
    with client(app, ANN) as ann, client(app, BOB) as bob, client(app, ROOT) as root:
        reviewed_batch(ann, "a red fox", "ann-snapshot")  # its own facts: the test runs alone too
        reviewed_batch(bob, "a grey heron", "bob-snapshot")
        r = bob.get("/api/monitoring/snapshot")
        assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
        with zipfile.ZipFile(io.BytesIO(r.content)) as archive:
            archive.extractall(tmp_path / "bob")
        with duckdb.connect() as other:
            users = other.execute(f"SELECT DISTINCT user_id FROM read_parquet('{tmp_path}/bob/facts/*.parquet', "
                                  "union_by_name = true)").fetchall()
            assert users == [("bob",)]
            [(batches,)] = other.execute(
                f"SELECT count(*) FROM read_parquet('{tmp_path}/bob/views/generation_logs.parquet')").fetchall()
            assert batches >= 1
        with zipfile.ZipFile(io.BytesIO(root.get("/api/monitoring/snapshot").content)) as archive:
            archive.extractall(tmp_path / "root")
        with duckdb.connect() as other:
            users = other.execute(f"SELECT DISTINCT user_id FROM read_parquet('{tmp_path}/root/facts/batches.parquet')"
                                  " ORDER BY 1").fetchall()
            assert ("ann",) in users and ("bob",) in users
