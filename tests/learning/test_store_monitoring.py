"""Monitoring while the app runs: read-only SQL over the monitoring views in a sandbox (each way out
we block has its test), and Parquet snapshots that another process can open."""

from __future__ import annotations

import io
import threading
import time
import zipfile
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from learning.store.monitoring_sql import MonitoringQueryError, check_select
from learning.store.preference_store import PreferenceStore
from tests.learning.store_builders import add_simple_batch

SEED_003 = "SELECT session_id, AVG(confidence) AS avg_confidence FROM generation_logs GROUP BY session_id"


@pytest.fixture
def history(store: PreferenceStore) -> PreferenceStore:
    """alice: two sessions, one selection; bob: one batch."""
    ids = add_simple_batch(store, "a1", ["ckA", "ckB"], session_id="s1", confidence=0.2)
    store.apply_feedback("alice", "a1", "select", [ids[0]])
    add_simple_batch(store, "a2", ["ckA"], session_id="s2", confidence=0.6)
    add_simple_batch(store, "b1", ["ckC"], user_id="bob", session_id="s9", confidence=0.9)
    return store


def test_seed_003_monitoring_query_answers_the_users_own_sessions(history: PreferenceStore) -> None:
    result = history.monitoring_query(SEED_003 + " ORDER BY session_id", "alice")
    assert result.columns == ["session_id", "avg_confidence"]
    assert result.rows == [("s1", pytest.approx(0.2)), ("s2", pytest.approx(0.6))]
    everyone = history.monitoring_query(SEED_003 + " ORDER BY session_id", None)  # an admin
    assert [row[0] for row in everyone.rows] == ["s1", "s2", "s9"]


def test_image_logs_show_keyword_checkpoint_selection_and_time(history: PreferenceStore) -> None:
    result = history.monitoring_query(
        "SELECT keyword, checkpoint, selected, confidence, strategy, created_at IS NOT NULL "
        "FROM (SELECT unnest(keywords) AS keyword, * FROM image_logs) WHERE batch_id = 'a1' "
        "ORDER BY keyword, checkpoint", "alice")
    assert [row[:3] for row in result.rows] == [("cat", "ckA", True), ("cat", "ckB", False),
                                                ("portrait", "ckA", True), ("portrait", "ckB", False)]
    assert all(row[5] for row in result.rows)


def test_other_users_rows_are_not_in_the_sandbox(history: PreferenceStore) -> None:
    for view in ("generation_logs", "image_logs", "feedback_logs", "preferences"):
        result = history.monitoring_query(f"SELECT DISTINCT user_id FROM {view}", "bob")
        assert result.rows in ([], [("bob",)]), view


@pytest.mark.parametrize(("sql", "message"), [
    ("SELECT 1; SELECT 2", "exactly one statement"),
    ("SELECT 1; DROP TABLE batches", "exactly one statement"),
    ("PRAGMA database_list", "not PRAGMA"),
    ("SET enable_external_access = true", "not SET"),
    ("RESET lock_configuration", "only SELECT"),
    ("COPY generation_logs TO '/tmp/x.csv'", "not COPY"),
    ("ATTACH ':memory:' AS other", "not ATTACH"),
    ("INSTALL httpfs", "not LOAD"),
    ("LOAD httpfs", "not LOAD"),
    ("EXPLAIN SELECT 1", "not EXPLAIN"),
    ("CALL pragma_database_list()", "not CALL"),
    ("CREATE TABLE t AS SELECT 1", "not CREATE"),
    ("INSERT INTO batches SELECT * FROM batches", "not INSERT"),
    ("UPDATE preference_stats SET selected = 0", "not UPDATE"),
    ("DELETE FROM feedback", "not DELETE"),
    ("DROP VIEW generation_logs", "not DROP"),
    ("/* a comment */ CHECKPOINT", "only SELECT"),
    ("SELEC 1", "syntax error"),
    ("", "empty"),
    ("SELECT 1 -- " + "x" * 10_000, "the limit is"),
])
def test_anything_but_one_select_is_refused_before_it_runs(history: PreferenceStore, sql: str, message: str) -> None:
    with pytest.raises(MonitoringQueryError, match=message):
        history.monitoring_query(sql, "alice")


@pytest.mark.parametrize("sql", [
    "SELECT * FROM read_csv('{file}')",
    "SELECT * FROM read_parquet('{file}')",
    "SELECT * FROM read_text('{file}')",
    "SELECT * FROM read_blob('{file}')",
    "SELECT * FROM glob('{folder}/*')",
    "SELECT * FROM '{file}'",
    "SELECT * FROM parquet_metadata('{file}')",
    "SELECT getenv('HOME')",
])
def test_files_and_the_environment_are_out_of_reach(history: PreferenceStore, tmp_path: Path, sql: str) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_text("password\nhunter2\n")
    with pytest.raises(MonitoringQueryError) as refused:
        history.monitoring_query(sql.format(file=secret, folder=tmp_path), "alice")
    assert "hunter2" not in str(refused.value)


@pytest.mark.parametrize("table", ["batches", "images", "feedback", "preference_stats", "user_state",
                                   "resets", "imported_stats"])
def test_base_tables_do_not_exist_in_the_sandbox(history: PreferenceStore, table: str) -> None:
    with pytest.raises(MonitoringQueryError, match="does not exist"):
        history.monitoring_query(f"SELECT * FROM {table}", "alice")
    with pytest.raises(MonitoringQueryError, match="does not exist"):  # nor through a nested query
        history.monitoring_query(f"SELECT * FROM query('SELECT * FROM {table}')", "alice")


def test_python_variables_are_not_tables(history: PreferenceStore) -> None:
    everyone = pd.DataFrame({"user_id": ["bob"], "secret": ["hunter2"]})  # noqa: F841 - the bait
    with pytest.raises(MonitoringQueryError, match="does not exist"):
        history.monitoring_query("SELECT * FROM everyone", "alice")


def test_the_sandbox_is_locked_down_and_cannot_be_unlocked(history: PreferenceStore) -> None:
    result = history.monitoring_query(
        "SELECT current_setting('enable_external_access'), current_setting('lock_configuration'), "
        "current_setting('python_enable_replacements'), current_setting('threads')", "alice")
    assert result.rows == [(False, True, False, 1)]
    with pytest.raises(MonitoringQueryError):  # a SET hidden in a nested query is no SELECT
        history.monitoring_query("SELECT * FROM query('SET enable_external_access = true')", "alice")


def test_a_slow_query_is_stopped(history: PreferenceStore) -> None:
    start = time.monotonic()
    with pytest.raises(MonitoringQueryError, match="longer than 0.5 s"):
        history.monitoring_query("SELECT sum(a.range * b.range) FROM range(100000000) a, range(100000000) b",
                                 "alice", seconds=0.5)
    assert time.monotonic() - start < 5


def test_a_memory_hungry_query_fails_readably(history: PreferenceStore) -> None:
    with pytest.raises(MonitoringQueryError, match="Out of Memory"):
        history.monitoring_query("SELECT list(range) FROM range(100000000)", "alice")


def test_rows_are_limited(history: PreferenceStore) -> None:
    result = history.monitoring_query("SELECT * FROM range(5000)", "alice", max_rows=1000)
    assert len(result.rows) == 1000 and result.truncated
    assert not history.monitoring_query("SELECT * FROM range(10)", "alice").truncated


def test_a_running_query_does_not_hold_up_writes(history: PreferenceStore) -> None:
    running = threading.Thread(target=lambda: pytest.raises(MonitoringQueryError, history.monitoring_query,
                                                            "SELECT count(*) FROM image_logs, range(10000000000)",
                                                            "alice", seconds=3))
    running.start()
    time.sleep(0.3)
    start = time.monotonic()
    history.apply_feedback("alice", "a2", "select", ["a2-0"])
    assert time.monotonic() - start < 2 and running.is_alive()
    running.join()


@pytest.mark.parametrize("statement", ["SELECT 1", "WITH a AS (SELECT 1 AS x) SELECT x FROM a", "FROM generation_logs",
                                       "VALUES (1)", "(SELECT 1) UNION ALL (SELECT 2)", "DESCRIBE image_logs"])
def test_every_form_of_select_is_accepted(statement: str) -> None:
    check_select(statement)


# --- snapshots -----------------------------------------------------------------------------------


def unzip(data: bytes, folder: Path) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        archive.extractall(folder)
        return sorted(archive.namelist())


def parquet(path: Path) -> pd.DataFrame:
    """A snapshot file as a DataFrame, read by DuckDB (pandas.read_parquet would need pyarrow,
    which the app does not depend on)."""
    with duckdb.connect() as other:
        return other.read_parquet(str(path)).df()


def test_a_snapshot_opens_in_duckdb_while_the_store_runs(tmp_path: Path) -> None:
    with PreferenceStore.open(tmp_path / "live.duckdb") as store:
        ids = add_simple_batch(store, "a1", ["ckA", "ckB"])
        store.apply_feedback("alice", "a1", "select", [ids[0]])
        store.reset_preferences("alice", "cat")
        add_simple_batch(store, "b1", ["ckC"], user_id="bob")
        names = unzip(store.snapshot("alice"), tmp_path / "snap")
        assert "facts/resets.parquet" in names and "views/generation_logs.parquet" in names
        assert "views/preferences.parquet" in names and "facts/feedback.parquet" in names
        logs = parquet(tmp_path / "snap" / "views" / "image_logs.parquet")
        assert sorted(logs["image_id"]) == ids and logs["selected"].tolist().count(True) == 1
        resets = parquet(tmp_path / "snap" / "facts" / "resets.parquet")
        assert resets["keyword"].tolist() == ["cat"]
        other = duckdb.connect()  # another connection, as another process would, while the store is open
        [(sessions, users)] = other.execute(
            f"SELECT count(DISTINCT session_id), count(DISTINCT user_id) "
            f"FROM read_parquet('{tmp_path / 'snap' / 'views' / 'generation_logs.parquet'}')").fetchall()
        assert (sessions, users) == (1, 1)
        prefs = other.execute(f"SELECT DISTINCT keyword FROM read_parquet('{tmp_path}/snap/views/preferences.parquet')"
                              ).fetchall()
        assert sorted(k for (k,) in prefs) == ["*", "portrait"]  # 'cat' was reset
        other.close()
        everyone = unzip(store.snapshot(None), tmp_path / "all")
        assert everyone == names
        batches = parquet(tmp_path / "all" / "facts" / "batches.parquet")
        assert sorted(batches["user_id"]) == ["alice", "bob"]
