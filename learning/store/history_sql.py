"""A user's history: every earlier image with its batch, filtered, newest first, one page at a time.

Fast at 100,000 images (bench/bench_history.py, target p95 <= 50 ms): the query never folds the
feedback of every image the way `image_logs` / `image_current_state` do. Instead:
- the filters read only what they need: image columns always, the batch row when a filter is on
  the prompt, keywords or tier, the user's click marks (`schema.click_marks_sql`, the one fold of
  clicks) when a filter is on selected or favourite;
- the order is `images.history_seq` (schema v10), each image's place in its user's history (1 for
  their first image, no gaps): newest first is its descending order. With no filter the page is a
  range of it below the newest (page k of 100,000 images is read, not sorted); with a filter the
  matches' `history_seq` alone go through DuckDB's Top-N (one integer, not a timestamp and a
  string). Only the page's rows are then read again for the columns shown, joined to their batch
  and to the marks of their own feedback (the fold of the page, not of the user).
"Selected" is `feedback_state(...) = 'selected'`, the selection rule every other read uses, fed
the image's last click alone: a Reject-all after the last click can only turn an image
'rejected', never 'selected', so it cannot change this column and its fold over every image is
left out. tests/learning/test_store_history.py holds `selected` and `favourite` equal to
image_logs / image_current_state over random feedback.

Each filter is one SQL condition in `_CONDITIONS`, keyed by the field of `HistoryFilter` it reads
and naming the source it needs; a filter left at None adds nothing. Paging is by offset, newest
first: the latest stored batch first, its images in descending image_id (as `created_at DESC,
image_id DESC` ordered them before v10), so pages never overlap or skip rows while nothing new
arrives; the total of matching rows comes with every page.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Sequence

import duckdb

from learning.models import Tier
from learning.store.schema import click_marks_sql

MAX_LIMIT = 200  # rows per page: a grid of thumbnails, never the whole history at once
DEFAULT_LIMIT = 50


@dataclass(frozen=True)
class HistoryFilter:
    """What to look for; None leaves a filter out. `prompt` is a case-insensitive substring,
    `keyword` a keyword stem (learning.keywords.stem), `since`/`until` bound `created_at`
    (since inclusive, until exclusive)."""

    prompt: str | None = None
    keyword: str | None = None
    checkpoint: str | None = None
    lora: str | None = None
    tier: Tier | None = None
    selected: bool | None = None
    favourite: bool | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = DEFAULT_LIMIT
    offset: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_LIMIT:
            raise ValueError(f"limit must be 1 to {MAX_LIMIT}, not {self.limit}")
        if self.offset < 0:
            raise ValueError(f"offset must be 0 or more, not {self.offset}")
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError("since must be before until")


@dataclass(frozen=True)
class HistoryRow:
    """One earlier image and the batch it came from."""

    image_id: str
    batch_id: str
    prompt: str
    checkpoint: str
    loras: tuple[str, ...]
    seed: int
    tier: str
    selected: bool
    favourite: bool
    status: str
    pruned: bool
    created_at: datetime


@dataclass(frozen=True)
class HistoryPage:
    """One page of matches and how many match in all."""

    rows: tuple[HistoryRow, ...]
    total: int
    limit: int
    offset: int


# Where a condition reads from: the image row (always there), its batch, its click marks.
IMAGE, BATCH, MARKS = "image", "batch", "marks"
_SELECTED_SQL = "coalesce(feedback_state(m.last_click, m.last_click_ord, NULL) = 'selected', false)"
_FAVOURITE_SQL = "favourite_state(m.last_mark)"

# filter field -> (the source it reads, its condition); each reads the parameter of the same name
_CONDITIONS: dict[str, tuple[str, str]] = {
    "prompt": (BATCH, "strpos(lower(b.prompt), lower($prompt)) > 0"),
    "keyword": (BATCH, "list_contains(b.keywords, $keyword)"),
    "checkpoint": (IMAGE, "i.checkpoint = $checkpoint"),
    "lora": (IMAGE, "list_contains(list_transform(i.loras, lambda l: l.name), $lora)"),
    "tier": (BATCH, "b.tier = $tier"),
    "selected": (MARKS, f"{_SELECTED_SQL} = $selected"),
    "favourite": (MARKS, f"{_FAVOURITE_SQL} = $favourite"),
    "since": (IMAGE, "i.created_at >= $since"),
    "until": (IMAGE, "i.created_at < $until"),
}
PAGING_FIELDS = frozenset({"limit", "offset"})  # the fields of HistoryFilter that are no condition

_JOINS = {
    BATCH: "JOIN batches b USING (batch_id)",
    # image_id alone: it is the images' primary key (one string to hash, not two)
    MARKS: "LEFT JOIN marks m ON m.image_id = i.image_id",
}
# The user's click marks: a fold over their own feedback only (for a filter on selected/favourite);
# the page's rows fold only their own.
_MARKS = f"marks AS ({click_marks_sql('user_id = $user_id')}),"
_PAGE_MARKS = f"page_marks AS ({click_marks_sql('user_id = $user_id AND image_id IN (SELECT image_id FROM paged)')})"


def history_places(cur: duckdb.DuckDBPyConnection, user_id: str, image_ids: Sequence[str]) -> dict[str, int]:
    """The `history_seq` of each of a new batch's images (schema v10): after the user's last, in
    image_id order. Runs on the writer thread, inside the insert's transaction."""
    (last,) = cur.execute("SELECT coalesce(max(history_seq), 0) FROM images WHERE user_id = ?", [user_id]).fetchone()
    return {image_id: last + place for place, image_id in enumerate(sorted(image_ids), start=1)}


def _matches(query: HistoryFilter) -> tuple[str, dict[str, Any], bool]:
    """The SELECT of the matching images' `history_seq`, its parameters (empty when no filter is
    given) and whether it reads the click marks."""
    given = {name: value for name, value in asdict(query).items() if name in _CONDITIONS and value is not None}
    sources = {_CONDITIONS[name][0] for name in given}
    joins = " ".join(join for source, join in _JOINS.items() if source in sources)
    where = " AND ".join(["i.user_id = $user_id", *(_CONDITIONS[name][1] for name in given)])
    return f"SELECT i.history_seq FROM images i {joins} WHERE {where}", given, MARKS in sources


# The page's places, newest first. Every image of the user matches: the places are a range below
# the newest (history_seq has no gaps), nothing is sorted. Otherwise the Top-N of the matches.
_EVERY_IMAGE_PAGE = """SELECT unnest(range(newest - $offset, greatest(newest - $offset - $limit, 0), -1)) AS history_seq
                       FROM counted"""
_MATCHES_PAGE = "SELECT history_seq FROM hits ORDER BY history_seq DESC LIMIT $limit OFFSET $offset"


def history_page(cur: duckdb.DuckDBPyConnection, user_id: str, query: HistoryFilter) -> HistoryPage:
    """The page of `user_id`'s images that match `query`, newest first, and the total count."""
    matches, params, reads_marks = _matches(query)
    rows = cur.execute(
        f"""WITH {_MARKS if reads_marks else ""}
            hits AS ({matches}),
            counted AS (SELECT count(*) AS total, coalesce(max(history_seq), 0) AS newest FROM hits),
            page AS ({_MATCHES_PAGE if params else _EVERY_IMAGE_PAGE}),
            paged AS (SELECT i.image_id, i.batch_id, i.checkpoint, i.loras, i.seed, i.status, i.pruned_at,
                             i.created_at, i.history_seq
                      FROM page p JOIN images i ON i.user_id = $user_id AND i.history_seq = p.history_seq),
            {_PAGE_MARKS},
            shown AS (SELECT i.image_id, i.batch_id, b.prompt, i.checkpoint,
                             list_transform(i.loras, lambda l: l.name) AS loras, i.seed, b.tier,
                             {_SELECTED_SQL} AS selected, {_FAVOURITE_SQL} AS favourite, i.status,
                             i.pruned_at IS NOT NULL AS pruned, i.created_at, i.history_seq
                      FROM paged i JOIN batches b USING (batch_id) LEFT JOIN page_marks m ON m.image_id = i.image_id)
            -- one row even for an empty page (past the end, or nothing matches): the total
            SELECT c.total, s.* EXCLUDE (history_seq) FROM counted c LEFT JOIN shown s ON true
            ORDER BY s.history_seq DESC""",
        {**params, "user_id": user_id, "limit": query.limit, "offset": query.offset},
    ).fetchall()
    total = int(rows[0][0])
    shown = [row for row in rows if row[1] is not None]
    return HistoryPage(
        rows=tuple(HistoryRow(*row[1:5], tuple(row[5]), *row[6:]) for row in shown),
        total=total, limit=query.limit, offset=query.offset,
    )
