"""The stats tables the app shows, read in SQL from the aggregates (plain counts, which never decay).

`keyword_table` is a live read (the app's per-keyword statistics, filterable by keyword): it has
no in-memory form. `rate_table` also serves the SQL reference reader's `arm_totals`
(`learning.store.aggregates_reference_sql`).
"""

from __future__ import annotations

import duckdb
import pandas

from learning.models import ArmKind
from learning.store.counting_write_path import ALL_KEYWORDS


def user_filter(user_id: str | None) -> str:
    """A trusted SQL fragment: no filter for the global view (keeps the plan simple)."""
    return "" if user_id is None else "AND user_id = $user_id"


def keyword_table(
    cur: duckdb.DuckDBPyConnection,
    user_id: str | None,
    kind: ArmKind,
    keyword_filter: str | None,
) -> pandas.DataFrame:
    """keyword, arm, selected, total, selection_rate per keyword (the '*' totals left out)."""
    condition = "keyword <> $all"
    params: dict[str, object] = {"all": ALL_KEYWORDS}
    if keyword_filter:
        condition += " AND contains(lower(keyword), lower($filter))"
        params["filter"] = keyword_filter
    return rate_table(cur, user_id, kind, condition, params, by_keyword=True)


def rate_table(
    cur: duckdb.DuckDBPyConnection,
    user_id: str | None,
    kind: ArmKind,
    condition: str,
    params: dict[str, object],
    by_keyword: bool = False,
) -> pandas.DataFrame:
    """Plain counts summed over users, with the selection rate; best arms first. Plain counts
    do not decay, so the half-life given to preference_stats_now does not matter here."""
    keyword = "keyword, " if by_keyword else ""
    params = {**params, "kind": kind}
    if user_id is not None:
        params["user_id"] = user_id
    return cur.execute(
        f"""SELECT {keyword}arm, sum(selected)::BIGINT AS selected, sum(shown)::BIGINT AS total,
                   sum(selected) / sum(shown) AS selection_rate
            FROM preference_stats_now(1.0)
            WHERE arm_kind = $kind AND {condition} {user_filter(user_id)}
            GROUP BY {keyword}arm
            HAVING sum(shown) > 0
            ORDER BY {keyword}selection_rate DESC, arm""",
        params,
    ).df()
