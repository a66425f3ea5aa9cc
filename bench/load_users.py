"""Concurrent users for the load and soak benches, and the invariants checked after a run.

A REST user runs generate → poll → select → stats → refine over httpx; a Gradio user drives the
UI's own events through `gradio_client` (generate streams through Gradio's queue, stats and
refine are Gradio events) and selects over REST with the same login. Every answered request is
timed per kind; every acknowledged selection and every batch is remembered with its user so the
database can be checked afterwards (nothing lost, nothing attributed to the wrong user or batch).
"""

from __future__ import annotations

import logging
import multiprocessing
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from gradio_client import Client

from draftgrid.config import AppConfig
from learning.store.preference_store import PreferenceStore

log = logging.getLogger(__name__)

PROMPTS = ("a red fox in the snow", "portrait of a woman, detailed lighting", "a castle at night",
           "anime girl with a sword", "a city street in the rain", "a forest cabin, cinematic")
POLL_SECONDS = 0.1
APP_TIMING = "app;dur="


@dataclass
class Recorder:
    """Thread-safe log of what the users saw; picklable, so each user's process sends its own back."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    failures: list[str] = field(default_factory=list)  # 5xx answers and dropped connections
    selections: list[tuple[str, str, str]] = field(default_factory=list)  # (user, batch, image) acked
    batches: list[tuple[str, str, int]] = field(default_factory=list)  # (user, batch, total) acked
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _lock=threading.Lock())

    def merge(self, other: Recorder) -> None:
        with self._lock:
            for kind, values in other.latencies.items():
                self.latencies[kind].extend(values)
            self.failures.extend(other.failures)
            self.selections.extend(other.selections)
            self.batches.extend(other.batches)

    def timed(self, kind: str, client: httpx.Client, method: str, path: str, **kw: Any) -> httpx.Response | None:
        """One request, timed as the user sees it and as the app spent it (its `Server-Timing`)."""
        start = time.perf_counter()
        try:
            response = client.request(method, path, **kw)
        except httpx.TransportError as exc:
            self.fail(f"{kind}: {exc!r}")
            return None
        self.add(kind, time.perf_counter() - start)
        if APP_TIMING in response.headers.get("server-timing", ""):
            self.add(f"{kind} (in app)", float(response.headers["server-timing"].split("dur=")[1]) / 1000)
        if response.status_code >= 500:
            self.fail(f"{kind} {path}: {response.status_code} {response.text[:200]}")
        return response

    def add(self, kind: str, seconds: float) -> None:
        with self._lock:
            self.latencies[kind].append(seconds)

    def fail(self, what: str) -> None:
        log.warning("failure: %s", what)
        with self._lock:
            self.failures.append(what)

    def selected(self, user: str, batch_id: str, image_ids: list[str]) -> None:
        with self._lock:
            self.selections.extend((user, batch_id, i) for i in image_ids)

    def batch(self, user: str, batch_id: str, total: int) -> None:
        with self._lock:
            self.batches.append((user, batch_id, total))

    def percentiles(self) -> dict[str, dict[str, float]]:
        """{kind: {n, p50, p95, p99}} in milliseconds."""
        out = {}
        for kind, values in sorted(self.latencies.items()):
            ms = np.array(values) * 1000
            out[kind] = {"n": len(ms), "p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)),
                         "p99": float(np.percentile(ms, 99))}
        return out


@dataclass
class UserRun:
    """One user's loop until `deadline`, pausing `think` seconds between actions."""

    url: str
    auth: tuple[str, str]
    rec: Recorder
    deadline: float
    think: float = 0.0
    rng: random.Random = field(default_factory=random.Random)

    @property
    def user(self) -> str:
        return self.auth[0]

    def pause(self) -> None:
        if self.think:
            time.sleep(self.rng.uniform(0, 2 * self.think))  # a person between clicks, not a sync

    def _wait_batch(self, client: httpx.Client, batch_id: str) -> dict[str, Any] | None:
        while time.monotonic() < self.deadline + 120:
            response = self.rec.timed("batch_poll", client, "GET", f"/api/batches/{batch_id}")
            if response is None or response.status_code != 200:
                return None
            body = response.json()
            if body["status"] not in ("queued", "running"):
                return body
            time.sleep(POLL_SECONDS)
        self.rec.fail(f"batch {batch_id} of {self.user} never finished")
        return None

    def _select(self, client: httpx.Client, batch: dict[str, Any], most: int = 3) -> list[str]:
        done = [i["image_id"] for i in batch["images"] if i["status"] == "done"]
        picked = self.rng.sample(done, min(len(done), self.rng.randint(1, most)))
        if not picked:
            return []
        response = self.rec.timed("select", client, "POST", "/api/feedback",
                                  json={"batch_id": batch["batch_id"], "selected": picked})
        if response is not None and response.status_code == 200:
            self.rec.selected(self.user, batch["batch_id"], picked)
            return picked
        return []

    def _generate(self, client: httpx.Client, kind: str, body: dict[str, Any]) -> dict[str, Any] | None:
        response = self.rec.timed(kind, client, "POST", "/api/generate/batch", json=body)
        if response is None or response.status_code != 200:
            return None
        ticket = response.json()
        self.rec.batch(self.user, ticket["batch_id"], ticket["total_count"])
        return self._wait_batch(client, ticket["batch_id"])

    def rest(self) -> None:
        """generate → poll → select → stats → refine → select, over the REST API."""
        with httpx.Client(base_url=self.url, auth=self.auth, timeout=120) as client:
            while time.monotonic() < self.deadline:
                batch = self._generate(client, "generate", {
                    "prompt": self.rng.choice(PROMPTS), "count": self.rng.randint(8, 20),
                    "session_id": f"{self.user}-rest"})
                if batch is None:
                    continue
                self.pause()
                picked = self._select(client, batch)
                self.rec.timed("stats", client, "GET", "/api/checkpoints/stats")
                self.pause()
                if picked and time.monotonic() < self.deadline:
                    refined = self._generate(client, "refine", {"prompt": "", "parent_image_ids": picked,
                                                                "session_id": f"{self.user}-rest"})
                    if refined is not None:
                        self._select(client, refined, most=1)
                self.pause()

    def gradio(self) -> None:
        """The UI's events through gradio_client (generate streams, stats, refine); select via REST."""
        # a browser fetches each thumbnail once and caches it; gradio_client would download the whole
        # gallery again on every streamed update, a load no real user puts on the app
        ui = Client(self.url, auth=self.auth, verbose=False, download_files=False)
        with httpx.Client(base_url=self.url, auth=self.auth, timeout=120) as client:
            while time.monotonic() < self.deadline:
                start = time.perf_counter()
                job = ui.submit(self.rng.choice(PROMPTS), "", "1:1", True, "Explore", "sd15",
                                self.rng.randint(8, 20), None, None, "", None, True, api_name="/generate")
                batch_id = next((o[5]["value"] for o in job if isinstance(o[5], dict) and o[5].get("value")), None)
                job.result()
                self.rec.add("gradio_generate_stream", time.perf_counter() - start)
                if batch_id is None:
                    self.rec.fail(f"gradio generate for {self.user} gave no batch id")
                    continue
                batch = self._wait_batch(client, batch_id)
                if batch is None:
                    continue
                self.rec.batch(self.user, batch_id, batch["total_count"])
                self.pause()
                picked = self._select(client, batch)
                start = time.perf_counter()
                ui.predict("Me", "", api_name="/stats")
                self.rec.add("gradio_stats", time.perf_counter() - start)
                self.pause()
                if picked and time.monotonic() < self.deadline:
                    start = time.perf_counter()
                    ui.predict(api_name="/refine")  # refines the selection of the session's batch
                    self.rec.add("gradio_refine_stream", time.perf_counter() - start)
                self.pause()


def run_users(url: str, credentials: list[tuple[str, str]], gradio_users: int, seconds: float,
              rec: Recorder, think: float = 0.0, seed: int = 1,
              on_start: Callable[[list[int]], None] | None = None) -> float:
    """Run every user in a process of its own for `seconds` (plus the work in flight); returns the
    wall time. Own processes because people click from their own machines: 20 users as threads of
    one process queue on one GIL, and that wait would be counted as the app's latency. The clock
    starts once every process has imported its libraries, so start-up is not part of the load.
    The user processes inherit the calling thread's CPU affinity; `on_start(pids)` is called with
    their pids as the clock starts."""
    ctx = multiprocessing.get_context("spawn")  # no fork of this process's threads
    ready, results = ctx.Barrier(len(credentials) + 1), ctx.Queue()
    users = [ctx.Process(target=_one_user, name=auth[0], daemon=True, args=(
        url, auth, seconds, think, seed + n, "gradio" if n < gradio_users else "rest", ready, results))
        for n, auth in enumerate(credentials)]
    for user in users:
        user.start()
    ready.wait()
    start = time.monotonic()
    if on_start is not None:
        on_start([user.pid for user in users if user.pid is not None])
    for _ in users:
        rec.merge(results.get())  # before join: a child exits only once its result is read
    for user in users:
        user.join()
    return time.monotonic() - start


def _one_user(url: str, auth: tuple[str, str], seconds: float, think: float, seed: int, kind: str,
              ready: Any, results: Any) -> None:
    """One user's whole run in its own process; a user that crashes is a finding for the report,
    not a crashed bench."""
    ready.wait()
    run = UserRun(url, auth, Recorder(), time.monotonic() + seconds, think, random.Random(seed))
    run.pause()  # people do not all press Generate in the same millisecond (none with --think 0)
    try:
        getattr(run, kind)()
    except Exception as exc:
        run.rec.fail(f"{run.user} crashed: {exc!r}")
    results.put(run.rec)


@dataclass(frozen=True)
class Invariants:
    """What the database says after the run."""

    aggregates_equal_rebuild: bool
    selections_missing: int
    batches_misattributed: int
    images_lost: int
    images_failed: int
    images_done: int
    feedback_rows: int
    images_pruned: int = 0  # done images whose file the retention policy removed (not lost)

    @property
    def ok(self) -> bool:
        return (self.aggregates_equal_rebuild and not self.selections_missing and not self.batches_misattributed
                and not self.images_lost)


def check_invariants(db: Path, rec: Recorder) -> Invariants:
    """Open the (stopped) app's database (with the app's half-life: decayed counts depend on it)
    and compare it with what the users were told."""
    with PreferenceStore.open(db, half_life=AppConfig().half_life) as store:
        state = store.read_sql("SELECT f.user_id, s.batch_id, s.image_id, s.state FROM image_current_state s "
                               "JOIN feedback f USING (batch_id, image_id) WHERE f.action = 'select'")
        selected = {(u, b, i) for u, b, i, s in state.itertuples(index=False) if s == "selected"}
        missing = [s for s in rec.selections if s not in selected]
        images = store.read_sql("SELECT i.batch_id, i.user_id AS image_user, b.user_id AS batch_user, i.status, "
                                "i.path, i.error, i.pruned_at FROM images i JOIN batches b USING (batch_id)")
        per_batch = images.groupby("batch_id").agg(n=("status", "size"), users=("image_user", "unique"),
                                                   owner=("batch_user", "first"))
        wrong = 0
        for user, batch_id, total in set(rec.batches):
            row = per_batch.loc[batch_id] if batch_id in per_batch.index else None
            if row is None or row["n"] != total or row["owner"] != user or list(row["users"]) != [user]:
                wrong += 1
        done = images[images.status == "done"]
        kept = done[done.pruned_at.isna()]
        lost = sum(1 for p in kept.path if not p or not Path(p).is_file())
        lost += int(((images.status == "failed") & images.error.isna()).sum())
        lost += int(images.status.isin(["queued", "running"]).sum())
        return Invariants(
            aggregates_equal_rebuild=store.aggregates_equal_rebuild(), selections_missing=len(missing),
            batches_misattributed=wrong, images_lost=lost, images_failed=int((images.status == "failed").sum()),
            images_done=len(done), feedback_rows=int(store.read_sql("SELECT count(*) AS n FROM feedback")["n"][0]),
            images_pruned=len(done) - len(kept),
        )


def print_report(title: str, wall: float, rec: Recorder, inv: Invariants) -> None:
    print(f"\n{title}: {wall:.1f} s wall")
    print(f"  throughput: {inv.images_done / wall:.2f} images/s done, {inv.feedback_rows / wall:.2f} feedback events/s "
          f"({inv.images_done} images, {inv.feedback_rows} feedback rows, {len(set(rec.batches))} batches)")
    print(f"  {'kind':24} {'n':>6} {'p50 ms':>9} {'p95 ms':>9} {'p99 ms':>9}")
    for kind, p in rec.percentiles().items():
        print(f"  {kind:24} {p['n']:6d} {p['p50']:9.1f} {p['p95']:9.1f} {p['p99']:9.1f}")
    print(f"  failures (5xx / dropped): {len(rec.failures)}" + (f" e.g. {rec.failures[:3]}" if rec.failures else ""))
    print(f"  invariants: {inv}")
    print(f"  ALL INVARIANTS HOLD: {inv.ok and not rec.failures}")
