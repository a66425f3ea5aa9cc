"""PreferenceStore: the one object the app uses to record facts and read preference evidence.

One DuckDB connection per process. Writes go through a single writer thread (DuckDB aborts
concurrent transactions that update the same aggregate row), each as one transaction that keeps
the aggregates in step with the facts; reads use per-thread cursors and see committed data.
The evidence reads (`arm_stats`, `base_rate`, `total_reviews`, `arm_totals`) are answered from
an in-memory copy of the aggregates that the writer moves forward after each commit.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Literal, Sequence, TypeVar

import duckdb
import pandas

from learning.store import (
    aggregates, aggregates_reference_sql, batch_jobs, crowd_pool, fact_reads, fact_writes, history_sql, monitoring_sql,
    resets, retention_sql, rules, sharing, snapshot, stats_tables_sql, transfer,
)
from learning.store.aggregates_memory import AggregateMemory
from learning.store.fact_writes import WriteContext
from learning.models import (
    ArmKind, ArmStat, BatchRecord, RuleKind, FeedbackAction, FeedbackResult, ImageRecord, ImageStatus, JobRecord,
    ResetRecord, ResetResult,
)
from learning.store.read_gate import ReadGate
from learning.store.recent_batches import RecentBatches
from learning.store.schema import ARMS_BEYOND_CHECKPOINTS, migrate, require_latest, schema_version
from learning.store.errors import (
    DatabaseLockedError,
    SchemaTooNewError,
    StoreError,
    UnknownBatchError,
    UnknownImageError,
    UnknownResetError,
)
from learning.store.timestamps import utc_now
from learning.store.writer import BACKGROUND, NORMAL, PROMPT, URGENT, SerialWriter

__all__ = [
    "DatabaseLockedError",
    "PreferenceStore",
    "SchemaTooNewError",
    "StoreError",
    "UnknownBatchError",
    "UnknownImageError",
    "UnknownResetError",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
TransferFormat = Literal["csv", "parquet"]

# DuckDB takes up to 80 % of RAM by default; the store shares the machine with the app and
# ComfyUI, so it caps DuckDB and lets big queries (a rebuild over millions of facts) spill to
# disk instead: a 10-million-fact rebuild then peaks near 2.3 GB RSS (bench/bench_store.py).
DUCKDB_MEMORY_LIMIT = "2GB"
DUCKDB_CONFIG = {"memory_limit": DUCKDB_MEMORY_LIMIT}

# Fold pending aggregate changes into preference_stats after this many writes: each write
# appends at most a few hundred change rows, so readers never sum more than ~20k pending rows.
COMPACT_EVERY_WRITES = 200

# Close and re-open the database file after this many writes: DuckDB keeps what it has written
# cached and its allocator keeps freed memory, so without this the app's RSS grows with every image
# it records (~1.5 KB an image in the soak); a re-open gives it all back (docs/RELIABILITY.md, "store
# memory"). Writes and reads queued behind it wait while it runs (not yet measured on this code).
# At ~5 writes a second under load, that is once every few minutes.
REOPEN_EVERY_WRITES = 1000
# How long a re-open waits for the reads in flight before it gives up and tries again later.
REOPEN_WAIT_SECONDS = 0.05
REOPEN_ATTEMPTS = 5


class PreferenceStore:
    """Facts (batches, images, feedback) and the per-keyword preference aggregates."""

    def __init__(
        self, con: duckdb.DuckDBPyConnection, path: str, half_life: float, read_only: bool
    ) -> None:
        self._con = con
        self.path = path
        self.half_life = half_life
        self.read_only = read_only
        self._aggregates = AggregateMemory(half_life)
        loaded = self._aggregates.load(con)
        log.info("loaded %d aggregate rows into memory", loaded)
        self._recent = RecentBatches()
        self._writer = None if read_only else SerialWriter(con)
        self._writes_since_compaction = 0
        self._writes_since_reopen = 0
        self._gate = ReadGate()
        self._generation = 0  # bumped by each re-open: a thread's cursor of an older one is closed
        self._local = threading.local()
        self._cursors: list[tuple[threading.Thread, duckdb.DuckDBPyConnection]] = []  # (owner, cursor)
        self._cursors_lock = threading.Lock()
        self._crowd_rebuilds: ThreadPoolExecutor | None = None
        self._crowd = crowd_pool.CrowdPool(lambda: self._read(crowd_pool.crowd_rows, half_life),
                                           self._crowd_executor)

    @classmethod
    def open(
        cls, path: str | Path, *, half_life: float = 30.0, read_only: bool = False
    ) -> "PreferenceStore":
        """Open (creating and migrating as needed) the store at `path`; ":memory:" allowed."""
        if half_life <= 0:
            raise ValueError("half_life must be positive (a number of reviews)")
        target = str(path)
        if target != ":memory:" and not read_only:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
        con = _connect(target, read_only)
        try:
            before = schema_version(con)
            version = require_latest(con) if read_only else migrate(con)
            store = cls(con, target, half_life, read_only)
        except BaseException:
            con.close()
            raise
        if 0 < before < ARMS_BEYOND_CHECKPOINTS <= version:
            log.info("rebuilding the aggregates once: schema v%d counts LoRA sets, CFG and negative terms", version)
            store.rebuild_aggregates()
        log.info("opened preference store %s (schema v%d, half_life=%s%s)",
                 target, version, half_life, ", read-only" if read_only else "")
        return store

    def close(self) -> None:
        """Finish pending writes and release the file."""
        if self._writer is not None:
            self._writer.close()
        if self._crowd_rebuilds is not None:
            self._crowd_rebuilds.shutdown(wait=True)
        with self._cursors_lock:
            for _, cursor in self._cursors:
                cursor.close()
            self._cursors.clear()
        self._con.close()
        log.info("closed preference store %s", self.path)

    def __enter__(self) -> "PreferenceStore":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # facts ------------------------------------------------------------------------------

    def add_batch(self, batch: BatchRecord, images: Sequence[ImageRecord], *, moved_on: bool = False,
                  jobs: Sequence[JobRecord] = ()) -> list[str]:
        """Record a new batch and its images (nothing counts until the batch is reviewed), and the
        prompts (`jobs`) that are to make them, as sent.

        `moved_on`: the user started this batch instead of reviewing the session's earlier ones, so
        those that finished unreviewed count as viewed — in the same transaction (one commit, one
        turn of the writer). Returns the batches reviewed that way."""

        def write(cur: duckdb.DuckDBPyConnection, ctx: WriteContext) -> list[str]:
            fact_writes.insert_batch(cur, batch, images, ctx)
            batch_jobs.insert_jobs(cur, jobs)
            if not moved_on:
                return []
            return fact_writes.view_batches(cur, batch.user_id, batch.session_id, batch.batch_id, ctx)

        return self._write(write, priority=PROMPT)  # someone waits for the batch to start

    def update_images(self, steps: Sequence[ImageStatus]) -> None:
        """Several lifecycle steps in one transaction: a finished ComfyUI job's images land together,
        so one commit (the costly part of a write) serves the whole job."""

        if steps:
            self._write(lambda cur, ctx: fact_writes.set_image_statuses(cur, steps, ctx))

    def apply_review(
        self,
        user_id: str,
        batch_id: str,
        steps: Sequence[tuple[FeedbackAction, Sequence[str]]],
    ) -> FeedbackResult:
        """Record one review request: its steps (action, image ids) in order, in ONE transaction.

        All or nothing: every step is checked first (UnknownBatchError, UnknownImageError, or
        ValueError for an unknown action, a click without image ids, a batch action with image
        ids, no steps at all), and a failure anywhere writes nothing of any step. The result is
        what applying the steps one by one with `apply_feedback` would end with (the selection
        after the last step, reviewed), with `changed` true when any step changed something.
        The aggregates end exactly where the steps one by one would leave them."""
        steps = [(action, list(ids)) for action, ids in steps]
        return self._write(
            lambda cur, ctx: fact_writes.record_review(cur, user_id, batch_id, steps, ctx),
            priority=URGENT,  # a person is waiting on this click
        )

    def apply_feedback(
        self,
        user_id: str,
        batch_id: str,
        action: FeedbackAction,
        image_ids: Sequence[str] = (),
    ) -> FeedbackResult:
        """A review of one step: `apply_review(user_id, batch_id, [(action, image_ids)])`."""
        return self.apply_review(user_id, batch_id, [(action, image_ids)])

    # resets -----------------------------------------------------------------------------

    def reset_preferences(self, user_id: str, keyword: str | None) -> ResetResult:
        """Forget what the user's reviews taught for `keyword` (None: everything), as a fact that
        `undo_reset` can take back. Nothing learnt there: nothing recorded (`reset_id` None)."""
        return self._write(lambda cur, ctx: resets.record_reset(cur, user_id, keyword, ctx), priority=URGENT)

    def undo_reset(self, user_id: str, reset_id: int) -> ResetResult:
        """Take one of the user's resets back (UnknownResetError for an unknown or another user's
        one); undoing it again changes nothing."""
        return self._write(lambda cur, ctx: resets.record_undo(cur, user_id, reset_id, ctx), priority=URGENT)

    def resets(self, user_id: str) -> list[ResetRecord]:
        """The user's resets, newest first."""
        return self._read(resets.list_resets, user_id)

    # reads ------------------------------------------------------------------------------

    def get_batch(self, batch_id: str, user_id: str | None) -> BatchRecord | None:
        return self._read(fact_reads.get_batch, batch_id, user_id)

    def batch_snapshot(self, batch_id: str) -> fact_reads.BatchSnapshot | None:
        """The batch, its images in grid order and its facts (selection states) in one read."""
        return self._read(fact_reads.load_batch_snapshot, batch_id)

    def get_image(self, image_id: str, user_id: str | None) -> ImageRecord | None:
        return self._read(fact_reads.get_image, image_id, user_id)

    def failed_images(self, batch_id: str) -> list[tuple[ImageRecord, JobRecord | None]]:
        """The batch's failed images, each with the prompt that was to make it (None: stored before
        prompts were recorded, schema v9)."""
        return self._read(batch_jobs.failed_images, batch_id)

    def arm_stats(
        self,
        user_id: str | None,
        kind: ArmKind,
        keywords: Sequence[str],
        arms: Sequence[str] | None = None,
    ) -> dict[tuple[str, str], ArmStat]:
        return self._aggregates.arm_stats(user_id, kind, keywords, arms)

    def arm_evidence(
        self, user_id: str | None, kind: ArmKind, keywords: Sequence[str], arms: Sequence[str]
    ) -> dict[tuple[str, str], ArmStat]:
        """`arm_stats` with changes of taste followed: what the adaptive policy plans with."""
        return self._aggregates.arm_evidence(user_id, kind, keywords, arms)

    def recent_taste_changes(self, user_id: str | None, kind: ArmKind, keywords: Sequence[str]) -> tuple[str, ...]:
        """Those of `keywords` whose evidence `arm_evidence` restarted lately (a change of taste)."""
        return self._aggregates.recent_taste_changes(user_id, kind, keywords)

    def base_rate(self, user_id: str | None, kind: ArmKind) -> ArmStat:
        return self._aggregates.base_rate(user_id, kind)

    def total_reviews(self, user_id: str | None) -> int:
        return self._aggregates.total_reviews(user_id)

    def arm_totals(self, user_id: str | None, kind: ArmKind) -> dict[str, dict]:
        return self._aggregates.arm_totals(user_id, kind)

    def keyword_table(
        self, user_id: str | None, kind: ArmKind = "checkpoint", keyword_filter: str | None = None
    ) -> pandas.DataFrame:
        return self._read(stats_tables_sql.keyword_table, user_id, kind, keyword_filter)

    def confidence_history(self, user_id: str | None) -> pandas.DataFrame:
        return self._read(fact_reads.confidence_history, user_id)

    def recent_batches(self, user_id: str, limit: int = 20) -> list[BatchRecord]:
        return self._read(fact_reads.recent_batches, user_id, limit)

    def lineage(self, image_id: str) -> list[ImageRecord]:
        return self._read(fact_reads.lineage, image_id)

    def history(self, user_id: str, query: history_sql.HistoryFilter) -> history_sql.HistoryPage:
        """One page of the user's earlier images matching `query`, newest first (learning.store.history_sql)."""
        return self._read(history_sql.history_page, user_id, query)

    def sql_aggregates(self) -> aggregates_reference_sql.SqlAggregates:
        """The same evidence reads answered by DuckDB instead of the in-memory copy (each through the
        read gate): the reference the copy is checked against, and the bench's baseline."""
        return aggregates_reference_sql.SqlAggregates(self._read, self.half_life)

    def read_sql(self, query: str, params: Sequence[object] | dict[str, object] = ()) -> pandas.DataFrame:
        """Run a read-only query (e.g. on the `generation_logs` view) on this thread's cursor.
        Writes must go through the methods above, never through here."""
        return self._read(lambda cur: cur.execute(query, params).df())

    def compact_aggregates(self) -> int:
        """Fold pending aggregate changes into preference_stats now (also runs by itself every
        COMPACT_EVERY_WRITES writes); returns the number of change rows folded."""
        return self._require_writer().submit(lambda cur: aggregates.compact(cur, self.half_life))

    def rebuild_aggregates(self) -> None:
        """Recompute preference_stats and user_state from the facts."""
        self._write(lambda cur, ctx: aggregates.rebuild(cur, ctx.aggregates, ctx.half_life,
                                                        ctx.now))

    def aggregates_equal_rebuild(self) -> bool:
        """True when the live aggregates equal a rebuild from the facts and the in-memory copy
        equals the live aggregates (read-only checks; the second runs between writes)."""
        rebuilt = self._read(aggregates.count_mismatches, self.half_life)

        def memory_mismatches(cur: duckdb.DuckDBPyConnection) -> int:
            return aggregates.count_memory_mismatches(cur, self._aggregates)

        copied = (self._read(memory_mismatches) if self._writer is None
                  else self._writer.submit(memory_mismatches))
        return rebuilt == 0 and copied == 0

    # the user's rules: LoRA vetoes, dismissed negative terms ----------------------------

    def rules(self, user_id: str, kind: RuleKind) -> tuple[tuple[str, str], ...]:
        """The user's (keyword, subject) rules of this kind in force (learning.store.rules)."""
        return self._read(rules.rules_in_force, user_id, kind)

    def set_rule(self, user_id: str, kind: RuleKind, keyword: str, subject: str, active: bool) -> bool:
        """Set or lift one rule (idempotent); True when it changed."""
        return self._write(lambda cur, ctx: rules.set_rule(cur, user_id, kind, keyword, subject, active, ctx.now))

    def replace_rules(self, user_id: str, kind: RuleKind, wanted: Sequence[tuple[str, str]]) -> int:
        """Make exactly `wanted` the rules of this kind in force, in one transaction (an import)."""
        return self._write(lambda cur, ctx: rules.set_rules(cur, user_id, kind, tuple(wanted), ctx.now))

    # sharing with the crowd -------------------------------------------------------------

    def shares_preferences(self, user_id: str) -> bool:
        """Whether the user's choice in force is to share their preferences (False until they opt in)."""
        return self._read(sharing.shares, user_id)

    def set_sharing(self, user_id: str, share: bool) -> bool:
        """Record the user's choice (idempotent); True when it changed. A crowd pool in use follows
        before this returns (an opt-out leaves it at once)."""
        changed = self._write(lambda cur, ctx: sharing.set_sharing(cur, user_id, share, ctx.now))
        if changed:
            self._crowd.sharing_changed()
        return changed

    def crowd_evidence(
        self, user_id: str, keywords: Sequence[str], arms: Sequence[str]
    ) -> dict[tuple[str, str], ArmStat]:
        """(keyword, checkpoint) → the decayed evidence of the OTHER users who share, summed; only
        cells at least `crowd_pool.MIN_CONTRIBUTORS` of them make up (learning.store.crowd_pool)."""
        return self._crowd.pooled(user_id, keywords, arms)

    def rebuild_crowd_pool(self) -> None:
        """Read the crowd pool again now (it also follows by itself: learning.store.crowd_pool)."""
        self._crowd.rebuild()

    # image retention --------------------------------------------------------------------

    def retention_rows(self) -> list[retention_sql.RetentionRow]:
        """Every image whose file may still be on disk, with the reasons it must keep it."""
        return self._read(retention_sql.retention_rows)

    def mark_pruned(self, image_ids: Sequence[str]) -> list[tuple[str, str]]:
        """Record that these images' files are being removed (protection checked again in the
        write: an image selected or refined since it was chosen is skipped); returns (image_id,
        batch_id) of those marked. Feedback and aggregates are untouched."""
        if not image_ids:
            return []
        ids = list(image_ids)
        return self._write(lambda cur, ctx: retention_sql.mark_pruned(cur, ids, ctx.now))

    def pruned_among(self, image_ids: Sequence[str]) -> list[str]:
        """Those of `image_ids` already marked pruned."""
        return self._read(retention_sql.pruned_among, image_ids)

    # transfer ---------------------------------------------------------------------------

    def export_preferences(self, user_id: str, fmt: TransferFormat) -> bytes:
        """The user's preference rows as CSV or Parquet bytes (decayed counts as of now)."""
        return self._read(transfer.export_preferences, user_id, fmt, self.half_life)

    def import_preferences(self, user_id: str, data: bytes, fmt: TransferFormat) -> int:
        """Validate an export and add its counts to the user's; returns the number of rows.
        A bad file raises ValueError and writes nothing."""
        rows = self._read(transfer.parse_preferences, data, fmt)
        return self._write(lambda cur, ctx: transfer.merge_preferences(cur, user_id, rows, ctx))

    # monitoring while the app runs ------------------------------------------------------

    def monitoring_query(self, sql: str, user_id: str | None, max_rows: int = monitoring_sql.MAX_ROWS,
                         seconds: float = monitoring_sql.QUERY_SECONDS) -> monitoring_sql.QueryResult:
        """One SELECT over the monitoring views, in a sandbox holding `user_id`'s rows (None:
        everyone's); MonitoringQueryError (a ValueError) when refused, failed or too slow."""
        return self._read(monitoring_sql.run_query, sql, user_id, self.half_life,
                                        max_rows=max_rows, seconds=seconds)

    def snapshot(self, user_id: str | None) -> bytes:
        """The facts and monitoring views of `user_id` (None: everyone) as Parquet files in a zip."""
        return self._read(snapshot.snapshot_zip, user_id, self.half_life)

    # plumbing ---------------------------------------------------------------------------

    def _write(self, fn: Callable[[duckdb.DuckDBPyConnection, WriteContext], T], priority: int = NORMAL) -> T:
        writer = self._require_writer()
        ctx = WriteContext(now=utc_now(), half_life=self.half_life,
                           aggregates=self._aggregates.changes(), batches=self._recent.changes())
        result = writer.submit(lambda cur: fn(cur, ctx),
                               lambda cur: self._follow_commit(cur, ctx), priority)
        self._schedule_maintenance(writer)
        return result

    def _follow_commit(self, cur: duckdb.DuckDBPyConnection, ctx: WriteContext) -> None:
        """Bring the in-memory copies up to the write that just committed (writer thread)."""
        self._recent.apply(ctx.batches)
        if ctx.aggregates.reload:
            log.info("reloaded %d aggregate rows into memory", self._aggregates.load(cur))
        else:
            self._aggregates.apply(ctx.aggregates)
        for user_id in ctx.aggregates.reload_users:
            self._aggregates.load(cur, user_id)
        for user_id, keyword in ctx.aggregates.forgotten:
            self._aggregates.forget_recent(user_id, keyword)

    def _crowd_executor(self) -> ThreadPoolExecutor:
        """The thread that rebuilds the crowd pool off the request path (started on first use)."""
        with self._cursors_lock:
            if self._crowd_rebuilds is None:
                self._crowd_rebuilds = ThreadPoolExecutor(1, thread_name_prefix="crowd-pool")
            return self._crowd_rebuilds

    def _require_writer(self) -> SerialWriter:
        if self._writer is None:
            raise StoreError(f"the preference store {self.path} is open read-only")
        return self._writer

    def _schedule_maintenance(self, writer: SerialWriter) -> None:
        """Every COMPACT_EVERY_WRITES writes queue a compaction, every REOPEN_EVERY_WRITES a
        re-open, behind them (neither awaited)."""
        with self._cursors_lock:
            self._writes_since_compaction += 1
            self._writes_since_reopen += 1
            compact = self._writes_since_compaction >= COMPACT_EVERY_WRITES
            reopen = self._writes_since_reopen >= REOPEN_EVERY_WRITES and self.path != ":memory:"
            if compact:
                self._writes_since_compaction = 0
            if reopen:
                self._writes_since_reopen = 0
        if compact:
            future = writer.enqueue(lambda cur: aggregates.compact(cur, self.half_life), priority=BACKGROUND)
            future.add_done_callback(_log_failed_compaction)
        if reopen:
            writer.maintain(self._reopen)

    def release_duckdb_memory(self) -> bool:
        """Close and re-open the database file now (it also happens by itself every
        REOPEN_EVERY_WRITES writes), giving back the memory DuckDB holds; False when reads in
        flight kept it from happening within REOPEN_WAIT_SECONDS. A file store only."""
        if self.path == ":memory:":
            raise StoreError("an in-memory store cannot be re-opened: closing it would lose it")
        done: list[bool] = []

        def reopen(cursor: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
            new = self._reopen(cursor)
            done.append(new is not cursor)
            return new

        self._require_writer().maintain(reopen, priority=URGENT).result()
        return done[0]

    def _reopen(self, writer_cursor: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
        """On the writer thread, between writes: close every cursor and the connection, open the
        file again and hand the writer its new cursor (the old one when reads held the gate)."""
        started = time.perf_counter()
        with self._gate.alone(REOPEN_WAIT_SECONDS) as alone:
            if not alone:
                log.info("store re-open put off: reads in flight for over %.0f ms", REOPEN_WAIT_SECONDS * 1000)
                return writer_cursor
            with self._cursors_lock:
                for _, cursor in self._cursors:
                    cursor.close()
                self._cursors.clear()
                self._generation += 1
            writer_cursor.close()
            self._con.close()
            self._con = _connect_again(self.path)
            cursor = self._con.cursor()
        log.info("re-opened preference store %s to give back DuckDB's memory (%.0f ms)",
                 self.path, (time.perf_counter() - started) * 1000)
        return cursor

    def _read(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        """`fn(cursor, *args, **kwargs)` on this thread's read cursor, inside the read gate (so a
        re-open never closes a cursor in use). Every read of the store goes through here."""
        with self._gate.reading():
            return fn(self._cursor(), *args, **kwargs)

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        """This thread's read cursor (DuckDB connections are not shared across threads); only
        `_read` calls this, inside the gate."""
        cursor = getattr(self._local, "cursor", None)
        if cursor is None or getattr(self._local, "generation", None) != self._generation:
            cursor = self._con.cursor()
            self._local.cursor = cursor
            self._local.generation = self._generation
            with self._cursors_lock:
                # server thread pools retire idle threads and start new ones: close the cursors of
                # threads that ended, or they pile up (a connection each, with its last result)
                ended = [c for thread, c in self._cursors if not thread.is_alive()]
                self._cursors = [(t, c) for t, c in self._cursors if t.is_alive()]
                self._cursors.append((threading.current_thread(), cursor))
            for old in ended:
                old.close()
        return cursor


def _connect(path: str, read_only: bool) -> duckdb.DuckDBPyConnection:
    try:
        return duckdb.connect(path, read_only=read_only, config=DUCKDB_CONFIG)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise DatabaseLockedError(path) from exc
        raise


def _connect_again(path: str, attempts: int = REOPEN_ATTEMPTS) -> duckdb.DuckDBPyConnection:
    """Open the file the store just closed; a failure (another process grabbed the lock in the
    gap, a slow disk) is retried before the store gives up with a StoreError."""
    failure: Exception | None = None
    for attempt in range(1, attempts + 1):
        try:
            return _connect(path, read_only=False)
        except (duckdb.Error, DatabaseLockedError) as exc:
            failure = exc
            log.warning("re-opening %s failed (try %d of %d): %s", path, attempt, attempts, exc)
            if attempt < attempts:
                time.sleep(0.1 * attempt)
    raise StoreError(f"the preference store could not re-open {path} after {attempts} tries: "
                     f"{failure}; restart the app") from failure


def _log_failed_compaction(future: Future[int]) -> None:
    if future.exception() is not None:
        log.error("background compaction failed (pending rows stay and still count): %s",
                  future.exception())
