"""The store's periodic re-open (which gives DuckDB's cached memory back): nothing is lost, no read
in flight fails, a slow read only puts it off, a failed re-connect is retried, and every read
passes the read gate that makes all this safe."""

from __future__ import annotations

import ast
import inspect
import logging
import threading
from pathlib import Path

import duckdb
import pytest

from learning.store import preference_store
from learning.store.errors import StoreError
from learning.store.preference_store import PreferenceStore
from learning.store.read_gate import ReadGate
from tests.learning.store_builders import add_simple_batch, assert_memory_equals_sql, evidence_snapshot

USERS = ("alice", None)
KEYWORDS = ("cat", "*")
ARMS = ("ckA", "ckB")


@pytest.fixture
def file_store(tmp_path: Path):
    store = PreferenceStore.open(tmp_path / "p.duckdb", half_life=5.0)
    yield store
    store.close()


def _reviewed_batch(store: PreferenceStore, batch_id: str) -> list[str]:
    ids = add_simple_batch(store, batch_id, ["ckA", "ckB"])
    store.apply_feedback("alice", batch_id, "select", [ids[0]])
    return ids


def test_a_reopen_keeps_every_fact_and_the_store_goes_on_reading_and_writing(file_store: PreferenceStore) -> None:
    _reviewed_batch(file_store, "b1")
    before = evidence_snapshot(file_store, USERS, KEYWORDS, ARMS)
    assert file_store.release_duckdb_memory() is True
    assert evidence_snapshot(file_store, USERS, KEYWORDS, ARMS) == before
    assert file_store.get_batch("b1", "alice") is not None
    _reviewed_batch(file_store, "b2")  # the writer's new cursor writes
    assert [b.batch_id for b in file_store.recent_batches("alice")] == ["b2", "b1"]
    assert file_store.aggregates_equal_rebuild()
    assert_memory_equals_sql(file_store, USERS, KEYWORDS, ARMS)


def test_the_store_reopens_by_itself_every_so_many_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(preference_store, "REOPEN_EVERY_WRITES", 4)
    caplog.set_level(logging.INFO, logger=preference_store.__name__)
    with PreferenceStore.open(tmp_path / "p.duckdb", half_life=5.0) as store:
        for n in range(6):  # two writes each: 12 writes, so three re-opens
            _reviewed_batch(store, f"b{n}")
    # closing ran what was queued, the last re-open included
    assert sum("re-opened preference store" in r.message for r in caplog.records) == 3
    with PreferenceStore.open(tmp_path / "p.duckdb", half_life=5.0) as store:
        assert len(store.recent_batches("alice")) == 6
        assert store.aggregates_equal_rebuild()


def test_reads_running_while_the_store_reopens_never_fail(file_store: PreferenceStore) -> None:
    ids = _reviewed_batch(file_store, "b1")
    errors: list[BaseException] = []
    stop = threading.Event()

    def read_until_stopped() -> None:
        while not stop.is_set():
            try:
                assert file_store.get_image(ids[0], "alice") is not None
                assert file_store.keyword_table("alice").shape[0] > 0
            except BaseException as exc:  # noqa: BLE001 - collected and failed on below
                errors.append(exc)
                return

    readers = [threading.Thread(target=read_until_stopped) for _ in range(4)]
    for reader in readers:
        reader.start()
    reopened = sum(file_store.release_duckdb_memory() for _ in range(15))
    stop.set()
    for reader in readers:
        reader.join()
    assert errors == []
    assert reopened >= 1  # four tight readers may put some re-opens off, never all of them


def test_a_read_slower_than_the_wait_puts_the_reopen_off_and_completes(file_store: PreferenceStore) -> None:
    _reviewed_batch(file_store, "b1")
    inside, release = threading.Event(), threading.Event()
    results: list[object] = []

    def slow_read(cur: duckdb.DuckDBPyConnection) -> object:
        inside.set()
        release.wait(10)
        return cur.execute("SELECT count(*) FROM images").fetchone()

    reader = threading.Thread(target=lambda: results.append(file_store._read(slow_read)))
    reader.start()
    assert inside.wait(10)
    assert file_store.release_duckdb_memory() is False  # gave up after REOPEN_WAIT_SECONDS
    release.set()
    reader.join()
    assert results == [(2,)]
    assert file_store.release_duckdb_memory() is True


def test_a_failed_reconnect_is_retried(file_store: PreferenceStore, monkeypatch: pytest.MonkeyPatch) -> None:
    _reviewed_batch(file_store, "b1")
    real_connect, failures = preference_store._connect, []

    def flaky_connect(path: str, read_only: bool) -> duckdb.DuckDBPyConnection:
        if len(failures) < 2:
            failures.append(path)
            raise duckdb.IOException("IO Error: could not open file (simulated)")
        return real_connect(path, read_only)

    monkeypatch.setattr(preference_store, "_connect", flaky_connect)
    assert file_store.release_duckdb_memory() is True
    assert len(failures) == 2
    assert file_store.get_batch("b1", "alice") is not None


def test_a_reconnect_that_keeps_failing_says_so_readably(file_store: PreferenceStore,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    def dead_connect(path: str, read_only: bool) -> duckdb.DuckDBPyConnection:
        raise duckdb.IOException("IO Error: disk gone (simulated)")

    monkeypatch.setattr(preference_store, "_connect", dead_connect)
    monkeypatch.setattr(preference_store.time, "sleep", lambda seconds: None)
    with pytest.raises(StoreError, match="could not re-open .* after 5 tries: .*disk gone.*restart the app"):
        file_store.release_duckdb_memory()


def test_an_in_memory_store_is_never_reopened(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(preference_store, "REOPEN_EVERY_WRITES", 1)
    with PreferenceStore.open(":memory:") as store:
        _reviewed_batch(store, "b1")  # a re-open would have lost this
        assert store.get_batch("b1", "alice") is not None
        with pytest.raises(StoreError, match="in-memory store cannot be re-opened"):
            store.release_duckdb_memory()


def test_only_the_gated_read_touches_a_read_cursor() -> None:
    """A read that took `_cursor()` outside `_read` could have its cursor closed under it."""
    tree = ast.parse(inspect.getsource(PreferenceStore))
    callers = {
        method.name
        for method in ast.walk(tree) if isinstance(method, ast.FunctionDef)
        for node in ast.walk(method)
        if isinstance(node, ast.Attribute) and node.attr == "_cursor" and method.name != "_cursor"
    }
    assert callers == {"_read"}


def test_the_gate_lets_reads_in_together_and_a_nested_read_never_waits() -> None:
    gate = ReadGate()
    with gate.reading():
        with gate.alone(0.01) as alone:
            assert alone is False  # a read is in flight
        with gate.reading():  # nested: no wait
            pass
    with gate.alone(0.01) as alone:
        assert alone is True
