"""Resets of what was learnt (one keyword, or everything) and their undos, written as facts.

A reset is a row of `resets` (its number from `fact_seq`, so it takes its place among the clicks,
finishes and imports), an undo a row of `reset_undos`. The rule they follow lives with the other
counting rules (`counting_write_path.hidden_keywords`, and `reset_floors` in the rebuild): an
active reset hides from its keyword's rows everything that counted before it. Here:

* a reset removes the covered rows (nothing that counts for them is left) — nothing is recorded
  when the user has no such rows;
* an undo recomputes the user's rows from the facts (`aggregates.rebuild_user`): what the reset
  hid comes back as the rules count it now, clicks made since on the hidden images included;
* both reload the user's part of the in-memory copy after commit.

Every function runs on the writer thread inside its transaction (`learning.store.writer`).
"""

from __future__ import annotations

import logging

import duckdb

from learning.models import ResetRecord, ResetResult
from learning.store.aggregates import rebuild_user, remove_rows
from learning.store.counting_write_path import ALL_KEYWORDS
from learning.store.errors import UnknownResetError
from learning.store.fact_writes import WriteContext

log = logging.getLogger(__name__)


def record_reset(
    cur: duckdb.DuckDBPyConnection, user_id: str, keyword: str | None, ctx: WriteContext
) -> ResetResult:
    """Forget what the user's reviews taught for `keyword` (None: everything)."""
    if keyword is not None and (not keyword.strip() or keyword == ALL_KEYWORDS):
        raise ValueError(f"keyword must be a keyword of your prompts (not empty, not {ALL_KEYWORDS!r}); "
                         "leave it out to reset everything")
    rows = ctx.aggregates.row_count(user_id, keyword)
    if rows == 0:
        log.info("reset of %s for %s: nothing learnt, nothing recorded", keyword or "everything", user_id)
        return ResetResult(None, keyword, 0, undone=False, changed=False)
    [(reset_id,)] = cur.execute(
        "INSERT INTO resets (user_id, keyword, review_seq, created_at) VALUES (?, ?, ?, ?) RETURNING reset_id",
        [user_id, keyword, ctx.aggregates.review_seq(user_id), ctx.now],
    ).fetchall()
    remove_rows(cur, ctx.aggregates, user_id, keyword)
    log.info("reset %d: %s forgot %s (%d aggregate rows)", reset_id, user_id, keyword or "everything", rows)
    return ResetResult(int(reset_id), keyword, rows, undone=False, changed=True)


def record_undo(
    cur: duckdb.DuckDBPyConnection, user_id: str, reset_id: int, ctx: WriteContext
) -> ResetResult:
    """Undo one of the user's resets (UnknownResetError for another user's); a repeat changes nothing."""
    found = cur.execute(
        """SELECT r.keyword, u.reset_id IS NOT NULL FROM resets r LEFT JOIN reset_undos u USING (reset_id)
           WHERE r.reset_id = ? AND r.user_id = ?""",
        [reset_id, user_id],
    ).fetchall()
    if not found:
        raise UnknownResetError(reset_id)
    [(keyword, undone)] = found
    if undone:
        return ResetResult(reset_id, keyword, 0, undone=True, changed=False)
    before = ctx.aggregates.row_count(user_id, keyword)
    cur.execute("INSERT INTO reset_undos VALUES (?, ?, ?, ?)",
                [reset_id, user_id, ctx.aggregates.review_seq(user_id), ctx.now])
    rebuild_user(cur, ctx.aggregates, user_id, ctx.half_life, ctx.now)
    [(after,)] = cur.execute(
        "SELECT count(*) FROM preference_stats WHERE user_id = ? AND (? IS NULL OR keyword = ?)",
        [user_id, keyword, keyword],
    ).fetchall()
    log.info("reset %d undone by %s: %s back (%d aggregate rows)", reset_id, user_id,
             keyword or "everything", after - before)
    return ResetResult(reset_id, keyword, int(after) - before, undone=True, changed=True)


def list_resets(cur: duckdb.DuckDBPyConnection, user_id: str) -> list[ResetRecord]:
    """The user's resets, newest first."""
    rows = cur.execute(
        """SELECT r.reset_id, r.keyword, r.created_at, u.undone_at
           FROM resets r LEFT JOIN reset_undos u USING (reset_id)
           WHERE r.user_id = ? ORDER BY r.reset_id DESC""",
        [user_id],
    ).fetchall()
    return [ResetRecord(*row) for row in rows]
