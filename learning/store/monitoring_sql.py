"""Read-only SQL over the monitoring views while the app runs, in a sandbox that holds only what
the caller may see.

DuckDB lets one process hold the file, so another process cannot read it while the app runs.
Queries run here instead, never on the store's connection:

1. the text must be ONE statement that DuckDB's own parser calls a SELECT (WITH, FROM-first,
   VALUES, DESCRIBE and SUMMARIZE parse as such); PRAGMA, SET, COPY, ATTACH, INSTALL, LOAD,
   EXPLAIN, CALL, DDL and DML are refused before anything runs;
2. the monitoring views it names are copied — the caller's rows only (all rows for `user_id`
   None, an admin) — from the store through a read cursor (no write waits on it), by way of
   temporary Parquet files, into a fresh in-memory DuckDB, which has nothing else: no base table, no file, no other user's row;
3. that sandbox is then locked down before the query runs: no external access (files, COPY,
   ATTACH of files, extensions, Python variables as tables), no extension autoloading, one
   thread, a memory limit, and `lock_configuration` so the query cannot SET any of it back;
4. the query is interrupted after `seconds`, and at most `max_rows` rows are fetched.

Every refusal is a `MonitoringQueryError` (a ValueError) with DuckDB's or our own readable message.
"""

from __future__ import annotations

import logging
import re
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from learning.store.transfer import sql_path

log = logging.getLogger(__name__)

# name → its rows in the store; each has a user_id column, which the copy filters on.
MONITORING_VIEWS: dict[str, str] = {
    "generation_logs": "SELECT * FROM generation_logs",  # one row per batch (seed 003's query)
    "image_logs": "SELECT * FROM image_logs",  # one row per image, its batch's context and selection
    "feedback_logs": "SELECT * FROM feedback_logs",  # every click, Reject all and view
    "reset_logs": "SELECT * FROM reset_logs",  # resets and when they were undone
    "preferences": "SELECT * FROM preference_stats_now($half_life)",  # the aggregates now
}

QUERY_SECONDS = 5.0
MAX_ROWS = 1000
MAX_SQL_CHARS = 10_000
SANDBOX_MEMORY = "256MB"

# After the views are in: what the query may not change or reach (then locked).
_LOCKDOWN = (
    "SET enable_progress_bar = false",
    "SET enable_external_access = false",
    "SET python_enable_replacements = false",
    "SET autoload_known_extensions = false",
    "SET autoinstall_known_extensions = false",
    "SET allow_community_extensions = false",
    "SET lock_configuration = true",
)


class MonitoringQueryError(ValueError):
    """A monitoring query refused or failed; the message says why."""


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool  # more rows than max_rows
    seconds: float


def check_select(sql: str) -> None:
    """Refuse anything but one SELECT statement (parsed by DuckDB, so comments, quoting and case
    cannot disguise another statement)."""
    if not sql.strip():
        raise MonitoringQueryError("the query is empty; write one SELECT over the monitoring views")
    if len(sql) > MAX_SQL_CHARS:
        raise MonitoringQueryError(f"the query is {len(sql)} characters; the limit is {MAX_SQL_CHARS}")
    with duckdb.connect(":memory:") as parser:
        try:
            statements = parser.extract_statements(sql)
        except duckdb.Error as exc:
            raise MonitoringQueryError(_first_line(exc)) from exc
    if len(statements) != 1:
        raise MonitoringQueryError(f"send exactly one statement, not {len(statements)}")
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise MonitoringQueryError(f"only SELECT (or WITH ... SELECT) queries are allowed, not {kind.name}")


def run_query(
    cur: duckdb.DuckDBPyConnection,
    sql: str,
    user_id: str | None,
    half_life: float,
    *,
    max_rows: int = MAX_ROWS,
    seconds: float = QUERY_SECONDS,
) -> QueryResult:
    """Run a monitoring query over the views `sql` names, as user `user_id` sees them (None: every
    user's rows). `cur` is a read cursor of the store; the query never runs on it."""
    check_select(sql)
    named = [name for name in MONITORING_VIEWS if re.search(rf"\b{name}\b", sql, re.IGNORECASE)]
    sandbox = duckdb.connect(":memory:", config={"threads": 1, "memory_limit": SANDBOX_MEMORY})
    try:
        with tempfile.TemporaryDirectory(prefix="draftgrid-monitor-") as tmp:
            for name in named:  # through Parquet: every column keeps its exact type
                target = Path(tmp) / f"{name}.parquet"
                write_parquet(cur, MONITORING_VIEWS[name], user_id, half_life, target)
                sandbox.execute(f"CREATE TABLE {name} AS SELECT * FROM read_parquet('{sql_path(target)}')")
        for statement in _LOCKDOWN:
            sandbox.execute(statement)
        return _run_limited(sandbox, sql, max_rows, seconds)
    finally:
        sandbox.close()


def write_parquet(cur: duckdb.DuckDBPyConnection, select: str, user_id: str | None, half_life: float,
                  target: Path) -> None:
    """The rows of `select` that `user_id` may see (None: all) as a Parquet file, from the store."""
    params: dict[str, object] = {"user_id": user_id}
    if "$half_life" in select:
        params["half_life"] = half_life
    cur.execute(f"""COPY (SELECT * FROM ({select}) WHERE $user_id IS NULL OR user_id = $user_id)
                    TO '{sql_path(target)}' (FORMAT parquet)""", params)


def _run_limited(sandbox: duckdb.DuckDBPyConnection, sql: str, max_rows: int, seconds: float) -> QueryResult:
    start = time.perf_counter()
    timer = threading.Timer(seconds, sandbox.interrupt)
    timer.start()
    try:
        result = sandbox.execute(sql)
        columns = [d[0] for d in result.description or ()]
        rows = result.fetchmany(max_rows + 1)
    except duckdb.InterruptException as exc:
        raise MonitoringQueryError(f"the query ran longer than {seconds:g} s and was stopped") from exc
    except duckdb.Error as exc:
        raise MonitoringQueryError(_first_line(exc)) from exc
    finally:
        timer.cancel()
    elapsed = time.perf_counter() - start
    log.info("monitoring query: %d columns, %d rows%s in %.3f s", len(columns), min(len(rows), max_rows),
             " (truncated)" if len(rows) > max_rows else "", elapsed)
    return QueryResult(columns, rows[:max_rows], len(rows) > max_rows, elapsed)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
