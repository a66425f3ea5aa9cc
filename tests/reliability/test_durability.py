"""Process kills: what the app acknowledged survives a SIGKILL, a migration killed half-way leaves
a file that opens cleanly, and a second process on the same database is refused clearly."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

import duckdb
import httpx

from learning.store.schema import LATEST_VERSION, MIGRATIONS
from learning.store.preference_store import PreferenceStore
from tests.reliability.conftest import (
    REPO, AppProcess, api, assert_store_consistent, start_app, table_counts, wait_done,
)

KILL_AFTER_ACKS = 120  # feedback answers received before the SIGKILL lands
INTERRUPTED = "the app stopped before this image finished"


class FeedbackStream:
    """Threads that toggle select/unselect on their own images (no two threads share an image,
    so per image the acknowledged order is the order the server applied)."""

    def __init__(self, url: str, batch_id: str, image_ids: list[str], threads: int = 3) -> None:
        self.url, self.batch_id = url, batch_id
        self.shares = [image_ids[i::threads] for i in range(threads)]
        self.acked: dict[str, list[str]] = {i: [] for i in image_ids}  # image -> actions answered 200
        self.in_flight: dict[str, str] = {}  # image -> action sent, answer not (yet) received
        self.enough = threading.Event()
        self._lock = threading.Lock()
        self._count = 0

    def run(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self._toggle, args=(share,), daemon=True) for share in self.shares]
        for t in threads:
            t.start()
        return threads

    def _toggle(self, share: list[str]) -> None:
        with api(self.url, timeout=10) as client:
            for n in range(10_000):
                image = share[n % len(share)]
                action = "selected" if len(self.acked[image]) % 2 == 0 else "unselected"
                self.in_flight[image] = action
                try:
                    response = client.post("/api/feedback", json={"batch_id": self.batch_id, action: [image]})
                except httpx.TransportError:
                    return  # the process is gone
                assert response.status_code == 200, response.text
                del self.in_flight[image]
                with self._lock:
                    self.acked[image].append(action)
                    self._count += 1
                    if self._count >= KILL_AFTER_ACKS:
                        self.enough.set()


def stored_version(store: PreferenceStore) -> int:
    return int(store.read_sql("SELECT max(version) AS v FROM schema_version")["v"][0])


def stored_clicks(store: PreferenceStore, batch_id: str) -> dict[str, list[str]]:
    rows = store.read_sql("SELECT image_id, action FROM feedback WHERE batch_id = ? AND action IN "
                          "('select', 'unselect') ORDER BY feedback_id", [batch_id])
    out: dict[str, list[str]] = {}
    for image_id, action in rows.itertuples(index=False):
        out.setdefault(image_id, []).append(action + "ed")
    return out


def test_sigkill_during_feedback_keeps_every_acknowledged_write(tmp_path: Path) -> None:
    db = tmp_path / "dg.duckdb"
    first = AppProcess(db, sim_speed=4.0).start()  # slow enough that a big batch is still running
    try:
        with api(first.url) as client:
            reviewed = client.post("/api/generate/batch", json={"prompt": "a red fox", "count": 8}).json()
            images = [i["image_id"] for i in wait_done(client, reviewed["batch_id"])["images"]]
            running = client.post("/api/generate/batch", json={"prompt": "a harbour", "count": 64}).json()
        stream = FeedbackStream(first.url, reviewed["batch_id"], images)
        threads = stream.run()
        assert stream.enough.wait(60), "the feedback stream stalled"
        first.kill(signal.SIGKILL)
        for t in threads:
            t.join(10)
    finally:
        first.kill()

    with PreferenceStore.open(db) as store:  # opens (WAL replayed) without the app's help
        assert stored_version(store) == LATEST_VERSION
        stored = stored_clicks(store, reviewed["batch_id"])
        for image, acked in stream.acked.items():
            got = stored.get(image, [])
            # every acknowledged click is stored, in order; at most the one in flight follows
            assert got[:len(acked)] == acked, image
            assert len(got) - len(acked) <= (1 if image in stream.in_flight else 0), image
        assert_store_consistent(store, settled=False)
        left = store.read_sql("SELECT count(*) AS n FROM images WHERE batch_id = ? AND status = 'queued'",
                              [running["batch_id"]])["n"][0]
        assert left > 0, "the kill was meant to land while the 64-image batch ran"

    second = AppProcess(db).start()
    try:
        with api(second.url) as client:
            batch = client.get(f"/api/batches/{running['batch_id']}").json()
            assert batch["status"] in ("partial", "failed")
            unfinished = [i for i in batch["images"] if i["status"] != "done"]
            assert unfinished and all(i["status"] == "failed" and i["error"] == INTERRUPTED for i in unfinished)
            shown = {i["image_id"]: i["selected"] for i in client.get(f"/api/batches/{reviewed['batch_id']}").json()["images"]}
            for image, acked in stream.acked.items():
                if image not in stream.in_flight and acked:
                    assert shown[image] == (acked[-1] == "selected"), image

            # a second process on the same file: refused with a message naming it, the first unharmed
            intruder = AppProcess(db).start(may_exit=True)
            assert intruder.wait() != 0
            assert str(db) in intruder.stderr() and "locked" in intruder.stderr()
            after = client.post("/api/feedback", json={"batch_id": reviewed["batch_id"], "reject_all": True})
            assert after.status_code == 200
            assert wait_done(client, client.post("/api/generate/batch", json={"prompt": "a fox", "count": 4})
                             .json()["batch_id"])["status"] == "done"
        second.kill(signal.SIGINT)  # a clean stop closes the store
        assert second.wait() == 0
    finally:
        second.kill()
    with PreferenceStore.open(db) as store:
        assert_store_consistent(store)


# Runs in a child process: the last migration of an older file, made slow so the kill lands inside
# its transaction (after the view and a column were created, before COMMIT).
MIGRATE_SLOWLY = """
import sys, duckdb
from learning.store.schema import MIGRATIONS, Migration, migrate
con = duckdb.connect(sys.argv[1])
con.create_function("announce", lambda: print("MIGRATING", flush=True) or 1, [], "INTEGER",
                    side_effects=True)
last = MIGRATIONS[-1]
slow = Migration(last.version, last.description, last.statements + (
    "ALTER TABLE images ADD COLUMN half_done VARCHAR",
    "UPDATE images SET half_done = repeat('x', 1000)",
    "SELECT announce()",
    "SELECT sum(range) FROM range(1000000000000)",
))
migrate(con, MIGRATIONS[:-1] + (slow,))
print("FINISHED", flush=True)
"""


def downgrade_to_previous_version(db: Path) -> None:
    """Make a file that looks written by the previous release: facts in, last migration undone."""
    with PreferenceStore.open(db) as store:
        assert stored_version(store) == LATEST_VERSION
    con = duckdb.connect(str(db))
    try:  # the last migration (v10, each image's place in the history) only added a column: the table
        # without it undoes it (DuckDB drops no column of a table with indexes, so it is made again)
        assert MIGRATIONS[-1].version == 10, "undo the newest migration here when adding one"
        con.execute("CREATE TABLE images_v9 AS SELECT * EXCLUDE (history_seq) FROM images")
        con.execute("DROP INDEX images_batch_idx")
        con.execute("DROP TABLE images")
        con.execute("ALTER TABLE images_v9 RENAME TO images")
        con.execute("ALTER TABLE images ADD PRIMARY KEY (image_id)")
        con.execute("CREATE INDEX images_batch_idx ON images (batch_id)")
        con.execute("DELETE FROM schema_version WHERE version = ?", [MIGRATIONS[-1].version])
    finally:
        con.close()


def test_kill_during_migration_leaves_a_file_that_opens_cleanly(tmp_path: Path) -> None:
    db = tmp_path / "old.duckdb"
    first = start_app(tmp_path, db_path=db)
    try:
        with api(first) as client:
            ticket = client.post("/api/generate/batch", json={"prompt": "a castle", "count": 8}).json()
            images = wait_done(client, ticket["batch_id"])["images"]
            client.post("/api/feedback", json={"batch_id": ticket["batch_id"], "selected": [images[0]["image_id"]]})
    finally:
        first.close()
    with PreferenceStore.open(db) as store:
        before = table_counts(store)
        before_now = store.read_sql("SELECT * FROM preference_stats_now(30.0) ORDER BY ALL")
    downgrade_to_previous_version(db)

    child = subprocess.Popen([sys.executable, "-c", MIGRATE_SLOWLY, str(db)], cwd=REPO, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "MIGRATING", child.stderr.read() if child.stderr else ""
    child.send_signal(signal.SIGKILL)
    child.wait(30)

    with PreferenceStore.open(db) as store:  # the real migrations run again, from the old version
        assert stored_version(store) == LATEST_VERSION
        # migrating across v7 rebuilds the aggregates once (pending rows folded in): same rows now
        after = table_counts(store)
        aggregates = ("preference_stats", "preference_stats_pending")
        assert {t: n for t, n in after.items() if t not in aggregates} == {
            t: n for t, n in before.items() if t not in aggregates}
        assert store.read_sql("SELECT * FROM preference_stats_now(30.0) ORDER BY ALL").drop(
            columns=["w_shown", "w_selected", "w_rejected"]).equals(
            before_now.drop(columns=["w_shown", "w_selected", "w_rejected"]))
        assert store.aggregates_equal_rebuild()
        columns = set(store.read_sql("SELECT column_name FROM information_schema.columns "
                                     "WHERE table_name = 'images'")["column_name"])
        assert "half_done" not in columns  # nothing of the killed transaction survived
        assert store.read_sql("SELECT count(*) AS n FROM images WHERE history_seq IS NULL")["n"][0] == 0  # back-filled
        logs = store.read_sql("SELECT images_done, images_selected FROM generation_logs")
        assert list(logs.itertuples(index=False, name=None)) == [(8, 1)]
        assert_store_consistent(store)
