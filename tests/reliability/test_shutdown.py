"""Closing the app while a batch runs: the batch ends on the servers and in the store — every
unfinished image failed as interrupted, nothing left queued — and nothing is left pending on the
app's event loop."""

from __future__ import annotations

import gc
import sys
import time
from pathlib import Path

import httpx

from draftgrid.batch_runner import INTERRUPTED
from learning.store.preference_store import PreferenceStore
from tests.reliability.conftest import start_app


def test_closing_the_app_mid_batch_ends_the_batch_cleanly(tmp_path: Path) -> None:
    app = start_app(tmp_path, sim_speed=2.0)  # slow enough that the batch is still running at close
    with httpx.Client(base_url=app.local_url.rstrip("/"), timeout=30) as client:
        ticket = client.post("/api/generate/batch", json={"prompt": "a harbour at night", "count": 32}).json()
        deadline = time.monotonic() + 30
        while client.get(f"/api/batches/{ticket['batch_id']}").json()["status"] == "queued":
            assert time.monotonic() < deadline, "the batch never started"
            time.sleep(0.05)
    simulator = app.backend.simulator
    assert simulator is not None
    unraisable: list[str] = []  # e.g. "Exception ignored in: <coroutine BatchRunner._run>"
    hook, sys.unraisablehook = sys.unraisablehook, lambda u: unraisable.append(f"{u.object!r}: {u.exc_value!r}")
    try:
        app.close()
        gc.collect()
    finally:
        sys.unraisablehook = hook
    assert not unraisable, unraisable
    with PreferenceStore.open(tmp_path / "dg.duckdb") as store:
        rows = store.read_sql("SELECT status, error FROM images WHERE batch_id = ?", [ticket["batch_id"]])
    assert set(rows["status"]) <= {"done", "failed"}, rows["status"].value_counts().to_dict()
    failed = rows[rows["status"] == "failed"]
    assert len(failed) > 0, "the close was meant to land while the batch ran"
    assert set(failed["error"]) == {INTERRUPTED}
