"""Export and import of a user's preference rows (CSV or Parquet), through DuckDB's own I/O.

Imports are facts too (`imported_stats`), so a rebuild from the facts keeps them; an import is
validated completely before anything is written.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import duckdb

from learning.arms import ARM_KINDS
from learning.store.aggregates import apply_import
from learning.store.fact_writes import WriteContext

log = logging.getLogger(__name__)

Format = Literal["csv", "parquet"]

COLUMNS = ("keyword", "arm_kind", "arm", "shown", "selected", "rejected",
           "w_shown", "w_selected", "w_rejected")

_READERS = {
    "csv": "read_csv($path, header = true, all_varchar = true, auto_detect = true)",
    "parquet": "read_parquet($path)",
}
_WRITERS = {"csv": "(FORMAT csv, HEADER true)", "parquet": "(FORMAT parquet)"}

# Checks in order; the first that fails on a row names that row and the reason.
_TYPED = """
SELECT row_number() OVER () AS line,
       trim(keyword::VARCHAR) AS keyword, trim(arm_kind::VARCHAR) AS arm_kind,
       trim(arm::VARCHAR) AS arm,
       TRY_CAST(shown AS BIGINT) AS shown, TRY_CAST(selected AS BIGINT) AS selected,
       TRY_CAST(rejected AS BIGINT) AS rejected,
       TRY_CAST(w_shown AS DOUBLE) AS w_shown, TRY_CAST(w_selected AS DOUBLE) AS w_selected,
       TRY_CAST(w_rejected AS DOUBLE) AS w_rejected
FROM {reader}
"""
_PROBLEMS = f"""
SELECT line, CASE
    WHEN keyword IS NULL OR keyword = '' THEN 'keyword is empty'
    WHEN arm_kind IS NULL OR arm_kind NOT IN ({", ".join(f"'{k}'" for k in ARM_KINDS)})
        THEN 'arm_kind must be one of {", ".join(ARM_KINDS)}'
    WHEN arm IS NULL OR arm = '' THEN 'arm is empty'
    WHEN shown IS NULL OR selected IS NULL OR rejected IS NULL
        THEN 'shown, selected and rejected must be whole numbers'
    WHEN shown < 0 OR selected < 0 OR rejected < 0 THEN 'counts cannot be negative'
    WHEN selected > shown OR rejected > shown THEN 'selected and rejected cannot exceed shown'
    WHEN w_shown IS NULL OR w_selected IS NULL OR w_rejected IS NULL
         OR NOT isfinite(w_shown) OR NOT isfinite(w_selected) OR NOT isfinite(w_rejected)
        THEN 'w_shown, w_selected and w_rejected must be finite numbers'
    -- Only w_shown: a selection or rejection undone reviews later subtracts a whole 1 from a
    -- decayed one, so an export can hold a negative w_selected or w_rejected.
    WHEN w_shown < 0 THEN 'w_shown cannot be negative'
    WHEN count(*) OVER (PARTITION BY keyword, arm_kind, arm) > 1
        THEN 'the same keyword, arm_kind and arm appear twice'
    END AS problem
FROM typed
"""


@dataclass(frozen=True)
class PreferenceRow:
    """One validated row of an import."""

    keyword: str
    arm_kind: str
    arm: str
    shown: int
    selected: int
    rejected: int
    w_shown: float
    w_selected: float
    w_rejected: float


def export_preferences(
    cur: duckdb.DuckDBPyConnection, user_id: str, fmt: Format, half_life: float
) -> bytes:
    """The user's rows (decayed counts as of now) in the chosen format."""
    if fmt not in _WRITERS:
        raise ValueError(f"export format must be csv or parquet, not {fmt!r}")
    with tempfile.TemporaryDirectory(prefix="draftgrid-export-") as tmp:
        target = Path(tmp) / f"preferences.{fmt}"
        cur.execute(
            f"""COPY (SELECT {', '.join(COLUMNS)} FROM preference_stats_now({float(half_life)!r})
                      WHERE user_id = $user_id ORDER BY keyword, arm_kind, arm)
                TO '{sql_path(target)}' {_WRITERS[fmt]}""",
            {"user_id": user_id},
        )
        data = target.read_bytes()
    log.info("exported preferences of %s as %s (%d bytes)", user_id, fmt, len(data))
    return data


def parse_preferences(
    cur: duckdb.DuckDBPyConnection, data: bytes, fmt: Format
) -> list[PreferenceRow]:
    """Read and validate an export; ValueError with a readable message on any problem."""
    if fmt not in _READERS:
        raise ValueError(f"import format must be csv or parquet, not {fmt!r}")
    if not data:
        raise ValueError("the uploaded file is empty")
    with tempfile.TemporaryDirectory(prefix="draftgrid-import-") as tmp:
        source = Path(tmp) / f"upload.{fmt}"
        source.write_bytes(data)
        params = {"path": str(source)}
        try:
            names = [d[0] for d in cur.execute(
                f"SELECT * FROM {_READERS[fmt]} LIMIT 0", params).description]
            missing = [c for c in COLUMNS if c not in names]
            if missing:
                raise ValueError(f"the file lacks the column(s) {', '.join(missing)}; "
                                 f"expected {', '.join(COLUMNS)}")
            typed = _TYPED.format(reader=_READERS[fmt])
            problems = cur.execute(  # fetchall: a result left unread holds its transaction open
                f"WITH typed AS ({typed}) SELECT * FROM ({_PROBLEMS}) "
                "WHERE problem IS NOT NULL ORDER BY line LIMIT 1",
                params,
            ).fetchall()
            problem = problems[0] if problems else None
            if problem:
                raise ValueError(f"row {problem[0]} of the file: {problem[1]}")
            rows = cur.execute(
                f"SELECT {', '.join(COLUMNS)} FROM ({typed}) ORDER BY line", params
            ).fetchall()
        except duckdb.Error as exc:
            raise ValueError(f"not a readable {fmt} preferences file: {exc}") from exc
    return [PreferenceRow(*row) for row in rows]


def merge_preferences(
    cur: duckdb.DuckDBPyConnection, user_id: str, rows: list[PreferenceRow], ctx: WriteContext
) -> int:
    """Record the rows as one import fact and add them to the user's aggregates."""
    if not rows:
        return 0
    row = cur.execute("SELECT nextval('fact_seq')").fetchone()
    assert row is not None
    import_id = int(row[0])
    values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(rows))
    params: list[object] = []
    for r in rows:
        params += [import_id, user_id, r.keyword, r.arm_kind, r.arm, r.shown, r.selected,
                   r.rejected, r.w_shown, r.w_selected, r.w_rejected, ctx.now]
    cur.execute(f"INSERT INTO imported_stats VALUES {values}", params)
    apply_import(cur, ctx.aggregates, user_id, import_id, ctx.half_life, ctx.now)
    log.info("imported %d preference rows for %s (import %d)", len(rows), user_id, import_id)
    return len(rows)


def sql_path(path: Path) -> str:
    """COPY takes a literal file name; our own temp path, quotes escaped all the same."""
    return str(path).replace("'", "''")
