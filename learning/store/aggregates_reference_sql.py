"""The SQL reference reader of the aggregates: the oracle of the in-memory copy, and the bench baseline.

`SqlAggregates` answers the store's evidence reads (`arm_stats`, `base_rate`, `total_reviews`,
`arm_totals`) straight from the aggregate tables in DuckDB. The app never reads through it: the
store answers those reads from memory (`learning.store.aggregates_memory`), and this is what that
copy must equal (`PreferenceStore.sql_aggregates()`, used by the agreement tests in
tests/learning/ and as bench/bench_store.py's baseline).

`user_id` None means every user (the global view); decayed counts are brought to each user's
current review_seq (the rule of `learning.store.decay`) before they are summed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import duckdb

from learning.models import ArmKind, ArmStat
from learning.store.aggregates_memory import sum_stats
from learning.store.counting_write_path import ALL_KEYWORDS
from learning.store.decay import decayed_to_now_sql
from learning.store.stats_tables_sql import rate_table, user_filter

Read = Callable[..., Any]


@dataclass(frozen=True)
class SqlAggregates:
    """The evidence reads as DuckDB answers them from the aggregate tables. The store serves
    these from memory (`learning.store.aggregates_memory`); this is what that copy must equal."""

    read: Read  # runs a function on a read cursor of the store: PreferenceStore._read
    half_life: float

    def arm_stats(
        self,
        user_id: str | None,
        kind: ArmKind,
        keywords: Sequence[str],
        arms: Sequence[str] | None = None,
    ) -> dict[tuple[str, str], ArmStat]:
        """(keyword, arm) → decayed evidence, for the given keywords (and arms, when given)."""
        return self.read(_decayed_sums, user_id, kind, keywords, arms, self.half_life)

    def base_rate(self, user_id: str | None, kind: ArmKind) -> ArmStat:
        """Decayed totals over every arm of the kind, from the all-prompts ('*') rows."""
        return sum_stats(
            self.read(_decayed_sums, user_id, kind, [ALL_KEYWORDS], None, self.half_life).values())

    def total_reviews(self, user_id: str | None) -> int:
        """How many batches the user (or everyone) has reviewed."""
        params = {} if user_id is None else {"user_id": user_id}
        row = self.read(lambda cur: cur.execute(
            "SELECT coalesce(sum(review_seq), 0) FROM user_state "
            f"WHERE true {user_filter(user_id)}",
            params,
        ).fetchone())
        assert row is not None
        return int(row[0])

    def arm_totals(
        self, user_id: str | None, kind: ArmKind
    ) -> dict[str, dict[str, float | int]]:
        """{arm: {"selected", "total", "selection_rate"}} over all prompts, plain counts."""
        table = self.read(rate_table, user_id, kind, "keyword = $all", {"all": ALL_KEYWORDS})
        return {
            row.arm: {"selected": int(row.selected), "total": int(row.total),
                      "selection_rate": float(row.selection_rate)}
            for row in table.itertuples(index=False)
        }


def _decayed_sums(
    cur: duckdb.DuckDBPyConnection,
    user_id: str | None,
    kind: ArmKind,
    keywords: Sequence[str],
    arms: Sequence[str] | None,
    half_life: float,
) -> dict[tuple[str, str], ArmStat]:
    """What `preference_stats_now` answers for these rows, spelled out: kept and pending rows,
    filtered inside each branch (DuckDB does not push these filters through the grouped macro:
    3x slower), decayed with the same SQL fragment, summed here."""
    if not keywords or (arms is not None and not arms):
        return {}
    where = "keyword = ANY($keywords) AND arm_kind = $kind" + (
        "" if user_id is None else " AND user_id = $user_id") + (
        "" if arms is None else " AND arm = ANY($arms)")
    columns = "user_id, keyword, arm, w_shown, w_selected, w_rejected, review_seq"
    params: dict[str, object] = {"keywords": list(dict.fromkeys(keywords)), "kind": kind,
                                 "half_life": half_life}
    if user_id is not None:
        params["user_id"] = user_id
    if arms is not None:
        params["arms"] = list(arms)
    rows = cur.execute(
        f"""SELECT a.keyword, a.arm, {decayed_to_now_sql("a", "$half_life")}
            FROM (SELECT {columns} FROM preference_stats WHERE {where}
                  UNION ALL
                  SELECT {columns} FROM preference_stats_pending WHERE {where}) a
            LEFT JOIN user_state u USING (user_id)""",
        params,
    ).fetchall()
    sums: dict[tuple[str, str], list[float]] = {}
    for keyword, arm, shown, selected, rejected in rows:
        total = sums.setdefault((keyword, arm), [0.0, 0.0, 0.0])
        total[0] += shown
        total[1] += selected
        total[2] += rejected
    return {key: ArmStat(*total) for key, total in sums.items()}

