"""Behaviour across real processes: the file lock, and durability of acknowledged writes."""

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
    from tests.learning.test_store_helpers import add_simple_batch
    store = PreferenceStore.open(sys.argv[1])
    n = 0
    while True:
        ids = add_simple_batch(store, f"b{n}", ["ckA", "ckB", "ckC"])
        store.apply_feedback("alice", f"b{n}", "select", [ids[n % 3]])
        print(f"ack b{n}", flush=True)
        n += 1
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
