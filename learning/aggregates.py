"""Keeping the aggregates equal to the facts: incremental changes, compaction, rebuild, check.

Decayed counts (`w_*`) are stored as of a row's `review_seq`; a row's value now is its stored
value decayed to the user's current seq. Writes append change rows stamped with the current
seq to `preference_stats_pending` (cheap); compaction folds them into `preference_stats`
(decay the kept row to the change's seq, add). The rebuild sums every change decayed from the
seq it happened at (rules as SQL in `learning.replay`). Readers see both tables summed, through
the `preference_stats_now` macro, so compaction never changes what they read.
"""

from __future__ import annotations

import logging
from datetime import datetime

import duckdb

from learning.feedback_rules import REVIEW_ACTIONS, ArmKey, Counts
from learning.replay import ARM_DELTAS_CTE

log = logging.getLogger(__name__)


def _upsert_sql(source: str, half_life: float) -> str:
    """Add a source of (user_id, keyword, arm_kind, arm, shown, selected, rejected, w_shown,
    w_selected, w_rejected, review_seq, updated_at) rows: counts add, decayed counts decay to
    the new review_seq first. The half-life is a float we validated, inlined as a literal."""
    hl = repr(float(half_life))
    return f"""
INSERT INTO preference_stats AS p
{source}
ON CONFLICT (user_id, keyword, arm_kind, arm) DO UPDATE SET
    shown = p.shown + excluded.shown,
    selected = p.selected + excluded.selected,
    rejected = p.rejected + excluded.rejected,
    w_shown = decayed(p.w_shown, excluded.review_seq - p.review_seq, {hl}) + excluded.w_shown,
    w_selected = decayed(p.w_selected, excluded.review_seq - p.review_seq, {hl})
                 + excluded.w_selected,
    w_rejected = decayed(p.w_rejected, excluded.review_seq - p.review_seq, {hl})
                 + excluded.w_rejected,
    review_seq = excluded.review_seq,
    updated_at = excluded.updated_at
"""


_IMPORTED_ROWS = """
SELECT user_id, keyword, arm_kind, arm, shown, selected, rejected,
       w_shown, w_selected, w_rejected, $seq, $now
FROM imported_stats WHERE import_id = $import_id
"""

# Pending changes per row, each decayed to its user's current seq (all are at or before it).
_PENDING_FOLDED = """
SELECT d.user_id, d.keyword, d.arm_kind, d.arm,
       sum(d.shown), sum(d.selected), sum(d.rejected),
       sum(decayed(d.w_shown, coalesce(u.review_seq, 0) - d.review_seq, {hl})),
       sum(decayed(d.w_selected, coalesce(u.review_seq, 0) - d.review_seq, {hl})),
       sum(decayed(d.w_rejected, coalesce(u.review_seq, 0) - d.review_seq, {hl})),
       coalesce(u.review_seq, 0), max(d.updated_at)
FROM preference_stats_pending d LEFT JOIN user_state u USING (user_id)
GROUP BY d.user_id, d.keyword, d.arm_kind, d.arm, u.review_seq
"""

# The aggregates recomputed from the facts: one row per (user, keyword, arm), decayed counts
# as of the user's current review_seq (which is also the row's review_seq).
_REBUILT = f"""
{ARM_DELTAS_CTE},
rebuilt_users AS (
    SELECT user_id, max(seq) AS review_seq FROM review_seqs GROUP BY user_id
),
imported_changes AS (
    SELECT m.user_id, m.keyword, m.arm_kind, m.arm, coalesce(r.seq, 0) AS seq,
           m.shown, m.selected, m.rejected, m.w_shown, m.w_selected, m.w_rejected
    FROM imported_stats m
    ASOF LEFT JOIN review_seqs r ON m.user_id = r.user_id AND m.import_id >= r.ord
),
all_changes AS (
    SELECT user_id, keyword, arm_kind, arm, seq, d_shown, d_selected, d_rejected,
           d_shown::DOUBLE AS dw_shown, d_selected::DOUBLE AS dw_selected,
           d_rejected::DOUBLE AS dw_rejected
    FROM arm_deltas
    UNION ALL
    SELECT * FROM imported_changes
),
rebuilt_stats AS (
    SELECT c.user_id, c.keyword, c.arm_kind, c.arm,
           sum(c.d_shown) AS shown, sum(c.d_selected) AS selected,
           sum(c.d_rejected) AS rejected,
           sum(decayed(c.dw_shown, n.now_seq - c.seq, $half_life)) AS w_shown,
           sum(decayed(c.dw_selected, n.now_seq - c.seq, $half_life)) AS w_selected,
           sum(decayed(c.dw_rejected, n.now_seq - c.seq, $half_life)) AS w_rejected,
           n.now_seq AS review_seq
    FROM all_changes c
    LEFT JOIN rebuilt_users u ON u.user_id = c.user_id,
    LATERAL (SELECT coalesce(u.review_seq, 0) AS now_seq) n
    GROUP BY c.user_id, c.keyword, c.arm_kind, c.arm, n.now_seq
)
"""

_REL_TOLERANCE = 1e-9


def bump_review_seq(cur: duckdb.DuckDBPyConnection, user_id: str) -> int:
    """Count one more reviewed batch for the user; return the new review_seq."""
    row = cur.execute(
        "UPDATE user_state SET review_seq = review_seq + 1 WHERE user_id = ? RETURNING review_seq",
        [user_id],
    ).fetchone()
    if row is None:
        cur.execute("INSERT INTO user_state VALUES (?, 1)", [user_id])
        return 1
    return int(row[0])


def current_review_seq(cur: duckdb.DuckDBPyConnection, user_id: str) -> int:
    """The user's review_seq (0 before the first review)."""
    row = cur.execute(
        "SELECT review_seq FROM user_state WHERE user_id = ?", [user_id]
    ).fetchone()
    return int(row[0]) if row else 0


def add_changes(
    cur: duckdb.DuckDBPyConnection,
    user_id: str,
    review_seq: int,
    changes: dict[ArmKey, Counts],
    now: datetime,
) -> None:
    """Append per-row count changes for one user, stamped with the user's current review_seq.
    Column lists as parameters: binding hundreds of scalar parameters costs milliseconds."""
    if not changes:
        return
    keys = list(changes)
    deltas = [changes[key] for key in keys]
    cur.execute(
        """INSERT INTO preference_stats_pending
           SELECT $user_id, unnest($keywords), unnest($kinds), unnest($arms),
                  unnest($shown), unnest($selected), unnest($rejected),
                  unnest($shown)::DOUBLE, unnest($selected)::DOUBLE, unnest($rejected)::DOUBLE,
                  $seq, $now""",
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


def compact(cur: duckdb.DuckDBPyConnection, half_life: float) -> int:
    """Fold the pending changes into preference_stats; return how many change rows it took."""
    row = cur.execute("SELECT count(*) FROM preference_stats_pending").fetchone()
    pending = int(row[0]) if row else 0
    if pending:
        hl = repr(float(half_life))
        cur.execute(_upsert_sql(_PENDING_FOLDED.format(hl=hl), half_life))
        cur.execute("DELETE FROM preference_stats_pending")
        log.info("folded %d pending aggregate changes into preference_stats", pending)
    return pending


def apply_import(
    cur: duckdb.DuckDBPyConnection, user_id: str, import_id: int, half_life: float, now: datetime
) -> None:
    """Add the rows of one import (already in `imported_stats`) to the kept aggregates."""
    cur.execute(
        _upsert_sql(_IMPORTED_ROWS, half_life),
        {"import_id": import_id, "seq": current_review_seq(cur, user_id), "now": now},
    )


def rebuild(cur: duckdb.DuckDBPyConnection, half_life: float, now: datetime) -> None:
    """Replace the aggregates by their recomputation from the facts (inside the caller's txn)."""
    cur.execute("DELETE FROM preference_stats")
    cur.execute("DELETE FROM preference_stats_pending")
    cur.execute("DELETE FROM user_state")
    cur.execute(
        f"""INSERT INTO preference_stats
            {_REBUILT}
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


def count_mismatches(cur: duckdb.DuckDBPyConnection, half_life: float) -> int:
    """Rows where the live aggregates differ from a rebuild: counts exactly, decayed counts
    within a relative 1e-9 (they are summed in a different order)."""
    row = cur.execute(
        f"""{_REBUILT},
        live AS (SELECT * FROM preference_stats_now($half_life)),
        stat_mismatches AS (
            SELECT count(*) AS n FROM rebuilt_stats r
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
            SELECT count(*) AS n FROM rebuilt_users r
            FULL OUTER JOIN user_state l USING (user_id)
            WHERE r.review_seq IS DISTINCT FROM l.review_seq
        )
        SELECT (SELECT n FROM stat_mismatches) + (SELECT n FROM user_mismatches)""",
        {"half_life": half_life, "tol": _REL_TOLERANCE},
    ).fetchone()
    assert row is not None
    mismatches = int(row[0])
    log.info("aggregates vs rebuild: %d mismatching rows", mismatches)
    return mismatches
