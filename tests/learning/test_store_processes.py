"""Behaviour across real processes: the file lock, durability of acknowledged writes, and a
review killed halfway leaving nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from learning.store.preference_store import DatabaseLockedError, PreferenceStore

ROOT = Path(__file__).resolve().parents[2]

_HOLDER = textwrap.dedent("""
    import sys
    from learning.store.preference_store import PreferenceStore
    store = PreferenceStore.open(sys.argv[1])
    print("ready", flush=True)
    sys.stdin.read()
    store.close()
""")

_WRITER = textwrap.dedent("""
    import sys
    from learning.store.preference_store import PreferenceStore
    from tests.learning.store_builders import add_simple_batch
    store = PreferenceStore.open(sys.argv[1])
    n = 0
    while True:
        ids = add_simple_batch(store, f"b{n}", ["ckA", "ckB", "ckC"])
        store.apply_feedback("alice", f"b{n}", "select", [ids[n % 3]])
        print(f"ack b{n}", flush=True)
        n += 1
""")

# Acknowledges one review, then dies by SIGKILL in the middle of the next one: after its
# feedback rows, reviewed_at and review_seq were written, before its aggregate changes.
_CRASHER = textwrap.dedent("""
    import os, signal, sys
    from learning.store import fact_writes
    from learning.store.preference_store import PreferenceStore
    from tests.learning.store_builders import add_simple_batch
    store = PreferenceStore.open(sys.argv[1])
    ids = add_simple_batch(store, "b0", ["ckA", "ckB"])
    store.apply_review("alice", "b0", [("select", [ids[0]]), ("reject", [ids[1]])])
    ids = add_simple_batch(store, "b1", ["ckA", "ckB"])
    print("ack b0", flush=True)
    fact_writes.add_changes = lambda *args: os.kill(os.getpid(), signal.SIGKILL)
    store.apply_review("alice", "b1", [("unselect", [ids[1]]), ("select", [ids[0]]),
                                       ("reject_all", [])])
    print("survived", flush=True)
""")


def _spawn(code: str, path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, str(path)], cwd=ROOT, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_file_held_by_another_process_raises_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "prefs.duckdb"
    holder = _spawn(_HOLDER, path)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(DatabaseLockedError) as caught:
            PreferenceStore.open(path)
        assert str(path) in str(caught.value)
        assert "another DraftGrid process" in str(caught.value)
    finally:
        holder.communicate(input="", timeout=30)
    PreferenceStore.open(path).close()  # free again once the holder exits


def test_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "prefs.duckdb"
    writer = _spawn(_WRITER, path)
    acked: list[str] = []
    try:
        while len(acked) < 25:
            line = writer.stdout.readline()
            assert line, "writer died before acknowledging enough writes"
            acked.append(line.split()[1])
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
    assert writer.returncode == -signal.SIGKILL
    store = PreferenceStore.open(path)
    try:
        for batch_id in acked:
            assert store.get_batch(batch_id, "alice") is not None
            assert list(store.batch_snapshot(batch_id).facts.states().values()).count("selected") == 1
        assert store.total_reviews("alice") >= len(acked)
        assert store.aggregates_equal_rebuild()
    finally:
        store.close()


def test_a_review_killed_halfway_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "prefs.duckdb"
    crasher = _spawn(_CRASHER, path)
    try:
        out, _ = crasher.communicate(timeout=60)
    finally:
        crasher.kill()
    assert crasher.returncode == -signal.SIGKILL and out.split("\n")[0] == "ack b0"
    store = PreferenceStore.open(path)
    try:
        assert store.batch_snapshot("b0").facts.states() == {"b0-0": "selected", "b0-1": "rejected"}
        assert store.batch_snapshot("b1").facts.feedback == ()
        assert store.get_batch("b1", "alice").reviewed_at is None
        assert store.total_reviews("alice") == 1
        assert store.arm_totals("alice", "checkpoint") == {
            "ckA": {"selected": 1, "total": 1, "selection_rate": 1.0},
            "ckB": {"selected": 0, "total": 1, "selection_rate": 0.0}}
        assert store.aggregates_equal_rebuild()
    finally:
        store.close()
