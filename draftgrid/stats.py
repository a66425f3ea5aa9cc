"""What the user's reviews taught, as the Stats tab and the stats routes show it, and moving it.

Reads of the aggregates only (never the facts), so every table answers fast at any history.
`scope="global"` sums every user's evidence.
"""

from __future__ import annotations

import pandas as pd

from draftgrid.errors import InvalidRequest
from learning.keywords import parse_prompt
from learning.models import ArmKind, BatchRecord
from learning.store.history_sql import HistoryFilter, HistoryPage
from learning.store.preference_store import PreferenceStore, TransferFormat

Scope = str  # "user" | "global"


def _scoped(user_id: str, scope: Scope) -> str | None:
    return None if scope == "global" else user_id


class PreferenceStats:
    """Selection rates per checkpoint, LoRA and keyword; confidence history; export and import."""

    def __init__(self, store: PreferenceStore) -> None:
        self._store = store

    def arm_totals(self, user_id: str, kind: ArmKind, scope: Scope = "user") -> dict[str, dict]:
        """`{arm: {"selected": n, "total": n, "selection_rate": r}}` — the API's exact shape."""
        return self._store.arm_totals(_scoped(user_id, scope), kind)

    def keyword_table(self, user_id: str, scope: Scope = "user", keyword: str | None = None) -> pd.DataFrame:
        """Keyword × checkpoint rates, each stem with the word the user actually typed."""
        frame = self._store.keyword_table(_scoped(user_id, scope), "checkpoint", keyword)
        labels = self.keyword_labels(user_id)
        frame.insert(1, "label", [labels.get(k, k) for k in frame["keyword"]])
        return frame.rename(columns={"arm": "checkpoint"})

    def keyword_stats(self, user_id: str, scope: Scope = "user", keyword: str | None = None) -> list[dict]:
        return self.keyword_table(user_id, scope, keyword).to_dict(orient="records")

    def keyword_labels(self, user_id: str, recent: int = 200) -> dict[str, str]:
        """Stem → display form, from the user's recent prompts (stems like "cherri" read badly).

        Derived rather than stored: parsing a prompt takes ~30 µs, and the Stats tab is no hot path.
        """
        labels: dict[str, str] = {}
        for batch in reversed(self._store.recent_batches(user_id, limit=recent)):
            for kw in parse_prompt(batch.prompt).keywords:
                labels[kw.stem] = kw.display
        return labels

    def confidence_history(self, user_id: str, scope: Scope = "user") -> pd.DataFrame:
        return self._store.confidence_history(_scoped(user_id, scope))

    def recent_batches(self, user_id: str, limit: int = 30) -> list[BatchRecord]:
        return self._store.recent_batches(user_id, limit=limit)

    def history(self, user_id: str, query: HistoryFilter) -> HistoryPage:
        return self._store.history(user_id, query)

    def export_preferences(self, user_id: str, fmt: TransferFormat) -> bytes:
        return self._store.export_preferences(user_id, fmt)

    def import_preferences(self, user_id: str, data: bytes, fmt: TransferFormat) -> int:
        try:
            return self._store.import_preferences(user_id, data, fmt)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from exc
