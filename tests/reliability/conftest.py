"""Shared helpers for the reliability tests: in-process apps, app subprocesses, and the store
invariants every fault must leave intact.

Import from here (`from tests.reliability.conftest import ...`): `start_app`, `wait_done`,
`api`, `table_counts`, `assert_store_consistent`, `AppProcess`, `sim_call`, `wait_gpus`.
"""

from __future__ import annotations

import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import httpx

from draftgrid.launch import RunningApp
from learning.store.preference_store import PreferenceStore
from bench.app_process import REPO, AppProcess
from tests.app.conftest import free_port, start_app, wait_done

__all__ = ["AppProcess", "api", "assert_store_consistent", "free_port", "sim_call", "start_app",
           "table_counts", "wait_done", "wait_gpus", "REPO"]

FACT_TABLES = ("batches", "images", "feedback", "imported_stats", "preference_stats", "user_state")
T = TypeVar("T")


def api(app: RunningApp | str, auth: tuple[str, str] | None = None, timeout: float = 30) -> httpx.Client:
    """An httpx client on the app's REST API (a RunningApp or a base URL)."""
    base = app if isinstance(app, str) else app.local_url
    return httpx.Client(base_url=base.rstrip("/"), auth=auth, timeout=timeout)


def sim_call(app: RunningApp, coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine (e.g. `server.restart()`) on the embedded simulator's loop."""
    assert app.backend.simulator is not None, "this app was started with --comfy URLs"
    return app.backend.simulator.call(coro)


def table_counts(store: PreferenceStore) -> dict[str, int]:
    """Row count of every fact and aggregate table: compare before/after a refused request."""
    return {t: int(store.read_sql(f"SELECT count(*) AS n FROM {t}")["n"][0]) for t in FACT_TABLES}


def assert_store_consistent(store: PreferenceStore, *, settled: bool = True) -> None:
    """Aggregates equal a rebuild from the facts; once `settled`, no image is left queued/running
    and every failed image says why."""
    assert store.aggregates_equal_rebuild(), "preference aggregates differ from a rebuild of the facts"
    if settled:
        stuck = store.read_sql("SELECT image_id, status FROM images WHERE status IN ('queued', 'running')")
        assert stuck.empty, f"images never settled: {stuck.to_dict('records')[:5]}"
        silent = store.read_sql("SELECT image_id FROM images WHERE status = 'failed' AND coalesce(error, '') = ''")
        assert silent.empty, f"failed images without a reason: {list(silent['image_id'])[:5]}"


def wait_gpus(client: httpx.Client, online: dict[str, bool], timeout: float = 30.0) -> list[dict[str, Any]]:
    """Poll GET /api/gpus until each named server's `online` matches (health checks run on their
    own clock in the app, so there is no event to await over HTTP)."""
    deadline = time.monotonic() + timeout
    while True:
        gpus = client.get("/api/gpus").json()
        state = {g["name"]: g["online"] for g in gpus}
        if all(state.get(name) == want for name, want in online.items()):
            return gpus
        if time.monotonic() > deadline:
            raise AssertionError(f"servers {state} never reached {online} within {timeout}s")
        time.sleep(0.05)
