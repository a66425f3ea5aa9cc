"""A batch never reports itself finished while one of its images is still queued or running.

A poll combines two sources: the store (each image's durable status) and the live board (whether
the batch ended). The runner writes the store, then the board; a poll must read the board, then
the store. This test holds a poll between its two reads until the batch has ended: a poll that
read the store first would now read "finished" from the board beside images the store still
called queued, and report the batch `partial` with no error on those images.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from learning.store.preference_store import PreferenceStore
from tests.reliability.conftest import api, start_app, wait_done

UNFINISHED = ("queued", "running")
SETTLE = 0.3  # after the store shows every image ended, time for the runner's board write to follow


def test_a_poll_held_between_its_two_reads_never_mixes_old_images_with_a_finished_batch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = start_app(tmp_path, sim_speed=20.0)
    held = threading.Event()
    real_snapshot = PreferenceStore.batch_snapshot

    def snapshot_then_wait_for_the_end(store: PreferenceStore, batch_id: str):  # type: ignore[no-untyped-def]
        snapshot = real_snapshot(store, batch_id)
        unfinished = snapshot is not None and any(i.status in UNFINISHED for i in snapshot.images)
        if unfinished and not held.is_set():
            held.set()  # hold this one poll until the store says every image ended
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                after = real_snapshot(store, batch_id)
                if after is not None and not any(i.status in UNFINISHED for i in after.images):
                    break
                time.sleep(0.01)
            time.sleep(SETTLE)
        return snapshot

    monkeypatch.setattr(PreferenceStore, "batch_snapshot", snapshot_then_wait_for_the_end)
    try:
        with api(app) as client:
            ticket = client.post("/api/generate/batch", json={"prompt": "a lighthouse at dusk", "count": 8}).json()
            seen = []
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                body = client.get(f"/api/batches/{ticket['batch_id']}").json()
                seen.append(body)
                if body["status"] not in UNFINISHED:
                    break
            assert held.is_set(), "no poll ever saw the batch unfinished: the hold never happened"
            for body in seen:
                if body["status"] not in UNFINISHED:
                    stuck = [i["image_id"] for i in body["images"] if i["status"] in UNFINISHED]
                    assert not stuck, f"batch read {body['status']} with images still unfinished: {stuck}"
            assert wait_done(client, ticket["batch_id"])["status"] == "done"
    finally:
        app.close()
