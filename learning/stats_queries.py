"""Reads of the preference aggregates only (never the facts), so they stay fast at any history.

`user_id` None means every user (the global view); decayed counts are brought to each user's
current review_seq before they are summed.
"""

from __future__ import annotations

from typing import Sequence

import duckdb
import pandas

from learning.models import ArmKind, ArmStat
from learning.replay import ALL_KEYWORDS


def _user_filter(user_id: str | None) -> str:
    """A trusted SQL fragment: no filter for the global view (keeps the plan simple)."""
    return "" if user_id is None else "AND user_id = $user_id"


def arm_stats(
    cur: duckdb.DuckDBPyConnection,
    user_id: str | None,
    kind: ArmKind,
    keywords: Sequence[str],
    arms: Sequence[str] | None,
    half_life: float,
) -> dict[tuple[str, str], ArmStat]:
    """(keyword, arm) → decayed evidence, for the given keywords (and arms, when given)."""
    if not keywords or (arms is not None and not arms):
        return {}
    arm_filter = "" if arms is None else "AND arm = ANY($arms)"
    params: dict[str, object] = {
        "half_life": half_life, "kind": kind, "keywords": list(dict.fromkeys(keywords))
    }
    if user_id is not None:
        params["user_id"] = user_id
    if arms is not None:
        params["arms"] = list(arms)
    rows = cur.execute(
        f"""SELECT keyword, arm, sum(w_shown), sum(w_selected), sum(w_rejected)
            FROM preference_stats_now($half_life)
            WHERE arm_kind = $kind AND keyword = ANY($keywords)
                  {_user_filter(user_id)} {arm_filter}
            GROUP BY keyword, arm""",
        params,
    ).fetchall()
    return {(kw, arm): ArmStat(shown, selected, rejected) for kw, arm, shown, selected, rejected in rows}


def base_rate(
    cur: duckdb.DuckDBPyConnection, user_id: str | None, kind: ArmKind, half_life: float
) -> ArmStat:
    """Decayed totals over every arm of the kind, from the all-prompts ('*') rows."""
    params: dict[str, object] = {"half_life": half_life, "kind": kind, "all": ALL_KEYWORDS}
    if user_id is not None:
        params["user_id"] = user_id
    row = cur.execute(
        f"""SELECT coalesce(sum(w_shown), 0), coalesce(sum(w_selected), 0),
                   coalesce(sum(w_rejected), 0)
            FROM preference_stats_now($half_life)
            WHERE arm_kind = $kind AND keyword = $all {_user_filter(user_id)}""",
        params,
    ).fetchone()
    assert row is not None
    return ArmStat(float(row[0]), float(row[1]), float(row[2]))


def total_reviews(cur: duckdb.DuckDBPyConnection, user_id: str | None) -> int:
    """How many batches the user (or everyone) has reviewed."""
    params = {} if user_id is None else {"user_id": user_id}
    row = cur.execute(
        f"SELECT coalesce(sum(review_seq), 0) FROM user_state WHERE true {_user_filter(user_id)}",
        params,
    ).fetchone()
    assert row is not None
    return int(row[0])


def arm_totals(
    cur: duckdb.DuckDBPyConnection, user_id: str | None, kind: ArmKind
) -> dict[str, dict[str, float | int]]:
    """{arm: {"selected", "total", "selection_rate"}} over all prompts, plain (undecayed) counts."""
    table = _rate_table(cur, user_id, kind, "keyword = $all", {"all": ALL_KEYWORDS})
    return {
        row.arm: {"selected": int(row.selected), "total": int(row.total),
                  "selection_rate": float(row.selection_rate)}
        for row in table.itertuples(index=False)
    }


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
    return _rate_table(cur, user_id, kind, condition, params, by_keyword=True)


def _rate_table(
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
            WHERE arm_kind = $kind AND {condition} {_user_filter(user_id)}
            GROUP BY {keyword}arm
            HAVING sum(shown) > 0
            ORDER BY {keyword}selection_rate DESC, arm""",
        params,
    ).df()
