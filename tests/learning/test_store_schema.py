"""Schema versioning: new files, older files, failed migrations, files from the future."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from learning.store.schema import LATEST_VERSION, MIGRATIONS, Migration, migrate, schema_version
from learning.store.preference_store import PreferenceStore, SchemaTooNewError, StoreError
from tests.learning.store_builders import add_simple_batch


def test_new_file_is_at_the_latest_version(tmp_path: Path) -> None:
    PreferenceStore.open(tmp_path / "p.duckdb").close()
    con = duckdb.connect(str(tmp_path / "p.duckdb"))
    try:
        assert schema_version(con) == LATEST_VERSION
        assert con.execute("SELECT count(*) FROM schema_version").fetchone()[0] == len(MIGRATIONS)
    finally:
        con.close()


def test_older_file_opens_cleanly_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    assert migrate(con, MIGRATIONS[:1]) == 1
    con.execute("""INSERT INTO batches VALUES ('b0', 'alice', 's1', 'a cat', '', ['cat'], 'draft',
                   'sd15', true, false, 'explore', 'ckA', 0.4, 1, 'adaptive', NULL,
                   TIMESTAMP '2025-01-01 10:00:00', NULL)""")
    con.close()
    store = PreferenceStore.open(path)
    try:
        assert store.get_batch("b0", "alice").prompt == "a cat"
        logs = store.read_sql("SELECT session_id, avg(confidence) AS c FROM generation_logs "
                              "GROUP BY session_id")
        assert logs.to_dict("records") == [{"session_id": "s1", "c": 0.4}]
    finally:
        store.close()


def test_a_v7_file_migrates_to_favourites_keeping_its_feedback(tmp_path: Path) -> None:
    path = tmp_path / "v7.duckdb"
    con = duckdb.connect(str(path))
    assert migrate(con, MIGRATIONS[:7]) == 7
    con.execute("""INSERT INTO feedback (user_id, batch_id, image_id, action, created_at)
                   VALUES ('alice', 'b0', 'i0', 'select', TIMESTAMP '2025-01-01 10:00:00')""")
    assert migrate(con, MIGRATIONS[:8]) == 8
    assert con.execute("SELECT feedback_id, action FROM feedback").fetchall() == [(1, "select")]
    assert con.execute("SELECT state, favourite FROM image_current_state").fetchall() == [("selected", False)]
    con.execute("""INSERT INTO feedback (user_id, batch_id, image_id, action, created_at)
                   VALUES ('alice', 'b0', 'i0', 'favourite', TIMESTAMP '2025-01-01 10:01:00')""")
    assert con.execute("SELECT feedback_id FROM feedback ORDER BY 1").fetchall() == [(1,), (2,)]
    assert con.execute("SELECT state, favourite FROM image_current_state").fetchall() == [("selected", True)]
    con.close()


def test_failed_migration_leaves_the_previous_version_intact(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "p.duckdb"))
    try:
        migrate(con)
        broken = Migration(LATEST_VERSION + 1, "half-applied on purpose", (
            "CREATE TABLE new_stuff (x INTEGER)",
            "ALTER TABLE batches ADD COLUMN rating INTEGER",
            "SELECT * FROM no_such_table",
        ))
        with pytest.raises(duckdb.CatalogException):
            migrate(con, (*MIGRATIONS, broken))
        assert schema_version(con) == LATEST_VERSION
        tables = {r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables").fetchall()}
        assert "new_stuff" not in tables
        columns = {r[0] for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'batches'"
        ).fetchall()}
        assert "rating" not in columns
    finally:
        con.close()


def test_file_from_a_newer_draftgrid_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.duckdb"
    PreferenceStore.open(path).close()
    con = duckdb.connect(str(path))
    con.execute("INSERT INTO schema_version VALUES (?, now()::TIMESTAMP)", [LATEST_VERSION + 5])
    con.close()
    with pytest.raises(SchemaTooNewError, match="newer"):
        PreferenceStore.open(path)
    with pytest.raises(SchemaTooNewError):
        PreferenceStore.open(path, read_only=True)


def test_read_only_open_of_an_unmigrated_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    migrate(con, MIGRATIONS[:1])
    con.close()
    with pytest.raises(StoreError, match="migrate"):
        PreferenceStore.open(path, read_only=True)


def test_data_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "p.duckdb"
    store = PreferenceStore.open(path)
    ids = add_simple_batch(store, "b1", ["ckA", "ckB"])
    store.apply_feedback("alice", "b1", "select", [ids[1]])
    store.close()
    reopened = PreferenceStore.open(path, read_only=True)
    try:
        assert reopened.batch_snapshot("b1").facts.states() == {ids[0]: "none", ids[1]: "selected"}
        assert reopened.arm_totals("alice", "checkpoint")["ckB"] == {
            "selected": 1, "total": 1, "selection_rate": 1.0}
        assert reopened.aggregates_equal_rebuild()
    finally:
        reopened.close()
