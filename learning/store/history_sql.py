"""A user's history: every earlier image with its batch, filtered, newest first, one page at a time.

The query reads the `image_logs` view (schema Migration 5), so an image's selection state is the
one rule every other read uses (`feedback_state` via `image_current_state`); nothing here decides
what "selected" means. Each filter is one SQL condition in `_CONDITIONS`, keyed by the field of
`HistoryFilter` it reads; a filter left at None adds nothing. New filters (the favourites helper's
`favourite`, once feedback has 'favourite'/'unfavourite' actions) are a field plus one entry there.

Paging is by offset, newest first with `image_id` as the tie-break, so pages never overlap or skip
rows while nothing new arrives; the total of matching rows comes with every page.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import duckdb

from learning.models import Tier

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


# filter field -> its condition; each reads the parameter of the same name
_CONDITIONS: dict[str, str] = {
    "prompt": "strpos(lower(prompt), lower($prompt)) > 0",
    "keyword": "list_contains(keywords, $keyword)",
    "checkpoint": "checkpoint = $checkpoint",
    "lora": "list_contains(loras, $lora)",
    "tier": "tier = $tier",
    "selected": "selected = $selected",
    "since": "created_at >= $since",
    "until": "created_at < $until",
}
PAGING_FIELDS = frozenset({"limit", "offset"})  # the fields of HistoryFilter that are no condition

_ROW_COLUMNS = "image_id, batch_id, prompt, checkpoint, loras, seed, tier, selected, status, pruned, created_at"


def _where(query: HistoryFilter) -> tuple[str, dict[str, Any]]:
    given = {name: value for name, value in asdict(query).items() if name in _CONDITIONS and value is not None}
    where = " AND ".join(["user_id = $user_id", *(_CONDITIONS[name] for name in given)])
    return where, given


def history_page(cur: duckdb.DuckDBPyConnection, user_id: str, query: HistoryFilter) -> HistoryPage:
    """The page of `user_id`'s images that match `query`, newest first, and the total count."""
    where, params = _where(query)
    params["user_id"] = user_id
    total_row = cur.execute(f"SELECT count(*) FROM image_logs WHERE {where}", params).fetchall()
    rows = cur.execute(
        f"""SELECT {_ROW_COLUMNS} FROM image_logs WHERE {where}
            ORDER BY created_at DESC, image_id DESC LIMIT $limit OFFSET $offset""",
        {**params, "limit": query.limit, "offset": query.offset},
    ).fetchall()
    return HistoryPage(
        rows=tuple(HistoryRow(*row[:4], tuple(row[4]), *row[5:]) for row in rows),
        total=int(total_row[0][0]), limit=query.limit, offset=query.offset,
    )
