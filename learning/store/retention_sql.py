"""What the image retention policy reads and writes: which images must keep their files, and the
`pruned_at` fact once a file is removed.

Protection is defined once, in `_ROWS_SQL`, and used both to list the candidates and again inside
the write that marks images pruned (so an image selected or refined after it was chosen keeps its
file). Marking an image pruned changes nothing else: its row, its feedback and the preference
aggregates stay exactly as they were, so a rebuild still equals them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Sequence

import duckdb

# Why an image must keep its file (the `protected` reasons; none: it may be pruned).
NOT_A_DRAFT = "not a draft"  # standard / quality images: refine outputs, what the user worked for
NOT_DONE = "not done"  # queued or running: its file may be arriving
SELECTED = "selected"  # the user's current selection (the last click decides, as everywhere)
REFINE_PARENT = "refine parent"  # some image names it as parent_image_id
FAVOURITE = "favourite"  # the user's favourite: never pruned (a favourite is selected too, but
# it stays its own reason so a later change to the selection rule cannot expose it)

# One row per image whose file may be on disk: not pruned yet, not failed (a failed image has no
# file). `{source}` is the images to consider, aliased `i` (every image, or the ids `$ids`).
# The lineage of a protected image is protected by REFINE_PARENT: every ancestor in a refine
# chain is some image's parent.
_ROWS_SQL = """
    WITH candidates AS (
        SELECT i.image_id, i.batch_id, i.user_id, i.created_at, i.status, b.tier
        FROM {source} JOIN batches b ON b.batch_id = i.batch_id
        WHERE i.pruned_at IS NULL AND i.status <> 'failed'
    ),
    selected AS (
        SELECT image_id, favourite FROM image_current_state
        WHERE state = 'selected' AND image_id IN (SELECT image_id FROM candidates)
    ),
    refine_parents AS (
        SELECT DISTINCT parent_image_id AS image_id FROM images
        WHERE parent_image_id IN (SELECT image_id FROM candidates)
    )
    SELECT c.image_id, c.batch_id, c.user_id, c.created_at,
           list_filter([
               CASE WHEN c.tier <> 'draft' THEN '""" + NOT_A_DRAFT + """' END,
               CASE WHEN c.status <> 'done' THEN '""" + NOT_DONE + """' END,
               CASE WHEN s.image_id IS NOT NULL THEN '""" + SELECTED + """' END,
               CASE WHEN s.favourite THEN '""" + FAVOURITE + """' END,
               CASE WHEN p.image_id IS NOT NULL THEN '""" + REFINE_PARENT + """' END
           ], lambda reason: reason IS NOT NULL) AS protected
    FROM candidates c
    LEFT JOIN selected s USING (image_id)
    LEFT JOIN refine_parents p USING (image_id)
"""
_EVERY_IMAGE = "images i"
_THESE_IMAGES = "(SELECT unnest($ids::VARCHAR[]) AS image_id) ids JOIN images i USING (image_id)"


@dataclass(frozen=True)
class RetentionRow:
    """An image whose file may be on disk, and why it must stay (empty: it may be pruned)."""

    image_id: str
    batch_id: str
    user_id: str
    created_at: datetime
    protected: tuple[str, ...]


def retention_rows(cur: duckdb.DuckDBPyConnection) -> list[RetentionRow]:
    """Every image not pruned and not failed, with its protection reasons."""
    rows = cur.execute(_ROWS_SQL.format(source=_EVERY_IMAGE)).fetchall()
    return [RetentionRow(image_id, batch_id, user_id, created_at, tuple(reasons))
            for image_id, batch_id, user_id, created_at, reasons in rows]


def mark_pruned(cur: duckdb.DuckDBPyConnection, image_ids: Sequence[str], now: datetime) -> list[tuple[str, str]]:
    """Set `pruned_at` on those of `image_ids` that are still unprotected and not pruned (checked
    in this transaction); returns (image_id, batch_id) of each image marked."""
    if not image_ids:
        return []
    rows = cur.execute(
        f"""UPDATE images SET pruned_at = $now
            WHERE image_id IN (SELECT image_id FROM ({_ROWS_SQL.format(source=_THESE_IMAGES)})
                               WHERE len(protected) = 0)
            RETURNING image_id, batch_id""",
        {"ids": list(image_ids), "now": now},
    ).fetchall()
    return [(image_id, batch_id) for image_id, batch_id in rows]


def pruned_among(cur: duckdb.DuckDBPyConnection, image_ids: Sequence[str]) -> list[str]:
    """Those of `image_ids` already marked pruned (files left behind by a crash after the mark)."""
    if not image_ids:
        return []
    rows = cur.execute(
        f"SELECT i.image_id FROM {_THESE_IMAGES} WHERE i.pruned_at IS NOT NULL", {"ids": list(image_ids)}
    ).fetchall()
    return [row[0] for row in rows]
