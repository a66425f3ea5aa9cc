"""Keeping the aggregates equal to the facts: incremental changes, compaction, rebuild, check.

Decayed counts (`w_*`) are stored as of a row's `review_seq`; a row's value now is its stored
value decayed to the user's current seq. Writes append change rows stamped with the current
seq to `preference_stats_pending` (cheap); compaction folds them into `preference_stats`
(decay the kept row to the change's seq, add). The rebuild sums every change decayed from the
seq it happened at (the rules as SQL, `learning.store.counting_rebuild_sql`). SQL readers see both
tables summed, through the `preference_stats_now` macro, so compaction never changes what they
read. Decay is the rule of `learning.store.decay`. Every
change is also handed to the transaction's `AggregateChanges`, which moves the in-memory copy
(`learning.store.aggregates_memory`) forward once the transaction commits.
"""

from __future__ import annotations

import logging
from datetime import datetime

import duckdb
import pandas

from learning.store.aggregates_memory import AggregateChanges, AggregateMemory
from learning.store.counting_rebuild_sql import REBUILT_CTE, rebuilt_cte
from learning.store.counting_write_path import REVIEW_ACTIONS, ArmKey, Counts
from learning.store.decay import DECAYED_COLUMNS, decayed_sql, decayed_to_now_sql

log = logging.getLogger(__name__)


def _upsert_sql(source: str, half_life: float) -> str:
    """Add a source of (user_id, keyword, arm_kind, arm, shown, selected, rejected, w_shown,
    w_selected, w_rejected, review_seq, updated_at) rows: counts add, decayed counts decay to
    the new review_seq first. The half-life is a float we validated, inlined as a literal."""
    hl = repr(float(half_life))
    decayed_sums = "".join(
        f"    {name} = {decayed_sql(f'p.{name}', 'excluded.review_seq - p.review_seq', hl)}"
        f" + excluded.{name},\n"
        for name in DECAYED_COLUMNS)
    return f"""
INSERT INTO preference_stats AS p
{source}
ON CONFLICT (user_id, keyword, arm_kind, arm) DO UPDATE SET
    shown = p.shown + excluded.shown,
    selected = p.selected + excluded.selected,
    rejected = p.rejected + excluded.rejected,
{decayed_sums}    review_seq = excluded.review_seq,
    updated_at = excluded.updated_at
"""


_IMPORTED_ROWS = """
SELECT user_id, keyword, arm_kind, arm, shown, selected, rejected,
       w_shown, w_selected, w_rejected, $seq, $now
FROM imported_stats WHERE import_id = $import_id
"""

# Pending changes per row, each decayed to its user's current seq (all are at or before it).
def _pending_folded_sql(half_life: str) -> str:
    return f"""
SELECT d.user_id, d.keyword, d.arm_kind, d.arm,
       sum(d.shown), sum(d.selected), sum(d.rejected),
       {decayed_to_now_sql("d", half_life, aggregate="sum")},
       coalesce(u.review_seq, 0), max(d.updated_at)
FROM preference_stats_pending d LEFT JOIN user_state u USING (user_id)
GROUP BY d.user_id, d.keyword, d.arm_kind, d.arm, u.review_seq
"""

_REL_TOLERANCE = 1e-9


def bump_review_seq(
    cur: duckdb.DuckDBPyConnection, pending: AggregateChanges, user_id: str
) -> int:
    """Count one more reviewed batch for the user; return the new review_seq. The current seq
    comes from memory (it equals user_state), which spares a RETURNING (~0.2 ms)."""
    seq = pending.review_seqs[user_id] = pending.review_seq(user_id) + 1
    if seq == 1:
        cur.execute("INSERT INTO user_state VALUES (?, 1)", [user_id])
    else:
        cur.execute("UPDATE user_state SET review_seq = ? WHERE user_id = ?", [seq, user_id])
    return seq


def add_changes(
    cur: duckdb.DuckDBPyConnection,
    pending: AggregateChanges,
    user_id: str,
    review_seq: int,
    changes: dict[ArmKey, Counts],
    now: datetime,
) -> None:
    """Append per-row count changes for one user, stamped with the user's current review_seq.
    Column lists as parameters (binding hundreds of scalar parameters costs milliseconds),
    each unnested once (a second `unnest` of the same list costs another ~0.4 ms)."""
    if not changes:
        return
    keys = list(changes)
    deltas = [changes[key] for key in keys]
    cur.execute(
        """INSERT INTO preference_stats_pending
           SELECT $user_id, keyword, arm_kind, arm, shown, selected, rejected,
                  shown, selected, rejected, $seq, $now
           FROM (SELECT unnest($keywords) AS keyword, unnest($kinds) AS arm_kind,
                        unnest($arms) AS arm, unnest($shown) AS shown,
                        unnest($selected) AS selected, unnest($rejected) AS rejected)""",
        {
            "user_id": user_id,
            "keywords": [k[0] for k in keys],
            "kinds": [k[1] for k in keys],
            "arms": [k[2] for k in keys],
            "shown": [d[0] for d in deltas],
            "selected": [d[1] for d in deltas],
            "rejected": [d[2] for d in deltas],
            "seq": review_seq,
            "now": now,
        },
    )
    pending.add_counts(user_id, review_seq, changes)


def compact(cur: duckdb.DuckDBPyConnection, half_life: float) -> int:
    """Fold the pending changes into preference_stats; return how many change rows it took."""
    row = cur.execute("SELECT count(*) FROM preference_stats_pending").fetchone()
    pending = int(row[0]) if row else 0
    if pending:
        cur.execute(_upsert_sql(_pending_folded_sql(repr(float(half_life))), half_life))
        cur.execute("DELETE FROM preference_stats_pending")
        log.info("folded %d pending aggregate changes into preference_stats", pending)
    return pending


def apply_import(
    cur: duckdb.DuckDBPyConnection,
    pending: AggregateChanges,
    user_id: str,
    import_id: int,
    half_life: float,
    now: datetime,
) -> None:
    """Add the rows of one import (already in `imported_stats`) to the kept aggregates."""
    seq = pending.review_seq(user_id)
    cur.execute(
        _upsert_sql(_IMPORTED_ROWS, half_life),
        {"import_id": import_id, "seq": seq, "now": now},
    )
    imported = cur.execute(
        """SELECT keyword, arm_kind, arm, shown, selected, rejected,
                  w_shown, w_selected, w_rejected
           FROM imported_stats WHERE import_id = ?""",
        [import_id],
    ).fetchall()
    for keyword, kind, arm, shown, selected, rejected, w_shown, w_selected, w_rejected in imported:
        pending.add_row(user_id, seq, (keyword, kind, arm), (shown, selected, rejected),
                        (w_shown, w_selected, w_rejected))


def rebuild(
    cur: duckdb.DuckDBPyConnection, pending: AggregateChanges, half_life: float, now: datetime
) -> None:
    """Replace the aggregates by their recomputation from the facts (inside the caller's txn)."""
    pending.reload = True
    cur.execute("DELETE FROM preference_stats")
    cur.execute("DELETE FROM preference_stats_pending")
    cur.execute("DELETE FROM user_state")
    cur.execute(
        f"""INSERT INTO preference_stats
            {REBUILT_CTE}
            SELECT user_id, keyword, arm_kind, arm, shown, selected, rejected,
                   w_shown, w_selected, w_rejected, review_seq, $now
            FROM rebuilt_stats""",
        {"half_life": half_life, "now": now},
    )
    cur.execute(f"""INSERT INTO user_state
                    SELECT b.user_id, count(*)
                    FROM (SELECT batch_id FROM feedback
                          WHERE action IN ({", ".join(repr(a) for a in REVIEW_ACTIONS)})
                          GROUP BY batch_id) r
                    JOIN batches b USING (batch_id)
                    GROUP BY b.user_id""")
    log.info("rebuilt preference aggregates from the facts (half_life=%s)", half_life)


def remove_rows(
    cur: duckdb.DuckDBPyConnection, pending: AggregateChanges, user_id: str, keyword: str | None
) -> None:
    """A reset: the user's rows of the keyword (None: all of them, '*' included) are gone, kept
    and pending alike (nothing that counted before the reset counts for them any more)."""
    for table in ("preference_stats", "preference_stats_pending"):
        cur.execute(f"DELETE FROM {table} WHERE user_id = $user_id AND ($keyword IS NULL OR keyword = $keyword)",
                    {"user_id": user_id, "keyword": keyword})
    pending.reload_users.add(user_id)
    pending.forgotten.append((user_id, keyword))


_USER_REBUILT_CTE = rebuilt_cte(one_user=True)


def rebuild_user(
    cur: duckdb.DuckDBPyConnection, pending: AggregateChanges, user_id: str, half_life: float,
    now: datetime,
) -> int:
    """Replace one user's rows by their recomputation from the facts (an undo: what the reset hid
    comes back, as the rules count it today); returns the number of rows."""
    pending.reload_users.add(user_id)
    for table in ("preference_stats", "preference_stats_pending"):
        cur.execute(f"DELETE FROM {table} WHERE user_id = ?", [user_id])
    [(rows,)] = cur.execute(
        f"""INSERT INTO preference_stats
            {_USER_REBUILT_CTE}
            SELECT user_id, keyword, arm_kind, arm, shown, selected, rejected,
                   w_shown, w_selected, w_rejected, review_seq, $now
            FROM rebuilt_stats""",
        {"half_life": half_life, "now": now, "user_id": user_id},
    ).fetchall()
    return int(rows)


def _mismatches_sql(expected_stats: str, expected_users: str) -> str:
    """CTEs ending in a count of the rows where the expected aggregates differ from the live
    ones: counts exactly, decayed counts within a relative 1e-9 (summed in another order)."""
    return f"""
        live AS (SELECT * FROM preference_stats_now($half_life)),
        stat_mismatches AS (
            SELECT count(*) AS n FROM {expected_stats} r
            FULL OUTER JOIN live l USING (user_id, keyword, arm_kind, arm)
            WHERE r.shown IS DISTINCT FROM l.shown
               OR r.selected IS DISTINCT FROM l.selected
               OR r.rejected IS DISTINCT FROM l.rejected
               OR NOT coalesce(abs(r.w_shown - l.w_shown)
                               <= $tol * greatest(1, abs(r.w_shown)), false)
               OR NOT coalesce(abs(r.w_selected - l.w_selected)
                               <= $tol * greatest(1, abs(r.w_selected)), false)
               OR NOT coalesce(abs(r.w_rejected - l.w_rejected)
                               <= $tol * greatest(1, abs(r.w_rejected)), false)
        ),
        user_mismatches AS (
            SELECT count(*) AS n FROM {expected_users} r
            FULL OUTER JOIN user_state l USING (user_id)
            WHERE r.review_seq IS DISTINCT FROM l.review_seq
        )
        SELECT (SELECT n FROM stat_mismatches) + (SELECT n FROM user_mismatches)"""


def _count(cur: duckdb.DuckDBPyConnection, query: str, half_life: float, what: str) -> int:
    [(mismatches,)] = cur.execute(query, {"half_life": half_life, "tol": _REL_TOLERANCE}).fetchall()
    log.info("aggregates vs %s: %d mismatching rows", what, mismatches)
    return mismatches


def count_mismatches(cur: duckdb.DuckDBPyConnection, half_life: float) -> int:
    """Rows where the live aggregates differ from a rebuild from the facts."""
    return _count(cur, f"{REBUILT_CTE}, {_mismatches_sql('rebuilt_stats', 'rebuilt_users')}",
                  half_life, "rebuild")


# The in-memory rows as a frame DuckDB can join (typed, so an empty copy still has columns).
_MEMORY_TYPES = {
    "user_id": "string", "keyword": "string", "arm_kind": "string", "arm": "string",
    "shown": "int64", "selected": "int64", "rejected": "int64",
    "w_shown": "float64", "w_selected": "float64", "w_rejected": "float64",
}
_MEMORY_COLUMNS = list(_MEMORY_TYPES)


def count_memory_mismatches(cur: duckdb.DuckDBPyConnection, memory: AggregateMemory) -> int:
    """Rows where the in-memory copy differs from the live aggregates in the database."""
    stats = pandas.DataFrame.from_records(memory.rows_now(), columns=_MEMORY_COLUMNS)
    users = pandas.DataFrame.from_records(list(memory.review_seqs().items()),
                                          columns=["user_id", "review_seq"])
    cur.register("memory_stats", stats.astype(_MEMORY_TYPES))
    cur.register("memory_users", users.astype({"user_id": "string", "review_seq": "int64"}))
    try:
        return _count(cur, f"WITH {_mismatches_sql('memory_stats', 'memory_users')}",
                      memory.half_life, "in-memory copy")
    finally:
        cur.unregister("memory_stats")
        cur.unregister("memory_users")
