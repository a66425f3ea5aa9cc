"""The preference aggregates held in memory: what the store's evidence reads answer, in microseconds.

The live reader of the aggregates (`arm_stats`, `base_rate`, `total_reviews`, `arm_totals`);
its oracle in tests is the SQL reference reader, `learning.store.aggregates_reference_sql`.

A copy of what `preference_stats_now` answers (kept + pending rows, and `user_state`): loaded once
when the store opens, then moved forward by the writer thread right after each commit. A write
transaction collects its changes in an `AggregateChanges`; they reach the copy only if the
transaction commits, so the copy always equals the committed database.

Rows keep the database's representation: plain counts, and decayed counts as of the row's
review_seq. Adding first decays the row to the change's seq (as compaction does in SQL); reading
decays it to the user's current seq (as `preference_stats_now` does), both with `decay_factor`,
the Python twin of the `decayed` macro (`learning.store.decay`), so both give the same numbers up
to float rounding.
"""

from __future__ import annotations

import threading
from typing import Iterable, Iterator, NamedTuple, Sequence

import duckdb

from learning.models import ArmKind, ArmStat
from learning.store.counting_write_path import ALL_KEYWORDS, ArmKey, Counts, ResetFact
from learning.store.decay import decay_factor
from learning.store.taste_changes import TasteChanges

Weights = tuple[float, float, float]  # decayed (shown, selected, rejected) at the change's seq
# (user_id, keyword, arm_kind, arm, shown, selected, rejected, w_shown, w_selected, w_rejected)
RowNow = tuple[str, str, str, str, int, int, int, float, float, float]


# One aggregate row: (shown, selected, rejected, w_shown, w_selected, w_rejected, seq), the
# decayed counts stated as of review_seq `seq`. Plain tuples of numbers, replaced on update:
# Python's garbage collector stops tracking them (and the dicts holding them), so 300k rows add
# ~3 ms to a full collection instead of ~45 ms with slotted objects.
_Row = tuple[int, int, int, float, float, float, int]
SHOWN, SELECTED, REJECTED, W_SHOWN, W_SELECTED, W_REJECTED, SEQ = range(7)


class _RowChange(NamedTuple):  # a tuple: a review makes ~130 of these, frozen dataclasses cost 3x
    user_id: str
    key: ArmKey
    seq: int
    counts: Counts
    weights: Weights


def sum_stats(stats: Iterable[ArmStat]) -> ArmStat:
    """Evidence of several arms added up (e.g. into a base rate)."""
    total = [0.0, 0.0, 0.0]
    for stat in stats:
        total[0] += stat.shown
        total[1] += stat.selected
        total[2] += stat.rejected
    return ArmStat(*total)


class AggregateChanges:
    """The aggregate changes of one write transaction, reading through to the committed copy."""

    def __init__(self, memory: "AggregateMemory") -> None:
        self._memory = memory
        self.review_seqs: dict[str, int] = {}
        self.rows: list[_RowChange] = []
        self.reload = False  # set by writes that replace the aggregates wholesale (rebuild)
        # users whose rows, seq and resets a write replaced in the database (a reset, an undo)
        self.reload_users: set[str] = set()
        # (user, keyword or None for all) whose recent counts and restarts a reset forgets
        self.forgotten: list[tuple[str, str | None]] = []

    def review_seq(self, user_id: str) -> int:
        """The user's review_seq as of this transaction (0 before the first review)."""
        if user_id in self.review_seqs:
            return self.review_seqs[user_id]
        return self._memory.review_seq(user_id)

    def active_resets(self, user_id: str) -> tuple[ResetFact, ...]:
        """The user's resets that are not undone (a write that changes them reloads the user)."""
        return self._memory.active_resets(user_id)

    def row_count(self, user_id: str, keyword: str | None) -> int:
        """The user's committed rows of the keyword (None: all)."""
        return self._memory.row_count(user_id, keyword)

    def add_counts(self, user_id: str, seq: int, changes: dict[ArmKey, Counts]) -> None:
        """Count changes from feedback: a decayed count changes by as much as its plain one."""
        for key, counts in changes.items():
            self.rows.append(_RowChange(user_id, key, seq, counts, (
                float(counts[0]), float(counts[1]), float(counts[2]))))

    def add_row(self, user_id: str, seq: int, key: ArmKey, counts: Counts,
                weights: Weights) -> None:
        """One change whose decayed counts differ from its plain ones (an imported row)."""
        self.rows.append(_RowChange(user_id, key, seq, counts, weights))


class AggregateMemory:
    """Committed aggregates by (arm_kind, keyword) → user → arm; reads take a lock because the
    writer thread updates rows in place."""

    def __init__(self, half_life: float) -> None:
        self.half_life = half_life
        self._lock = threading.Lock()
        self._rows: dict[tuple[str, str], dict[str, dict[str, _Row]]] = {}
        self._seqs: dict[str, int] = {}
        self._resets: dict[str, tuple[ResetFact, ...]] = {}
        # recent counts and restarts after changes of taste: derived, in memory only, fed here
        self.taste_changes = TasteChanges(half_life)

    def load(self, cur: duckdb.DuckDBPyConnection, user_id: str | None = None) -> int:
        """Replace the copy (or one user's part of it) by the database's current aggregates,
        review seqs and active resets; return the row count loaded."""
        mine, who = "WHERE $user_id IS NULL OR user_id = $user_id", {"user_id": user_id}
        seqs = dict(cur.execute(f"SELECT user_id, review_seq FROM user_state {mine}", who).fetchall())
        found = cur.execute(
            f"""SELECT user_id, keyword, arm_kind, arm, shown, selected, rejected,
                      w_shown, w_selected, w_rejected
               FROM preference_stats_now($half_life) {mine}""",
            {**who, "half_life": self.half_life},
        ).fetchall()
        resets: dict[str, tuple[ResetFact, ...]] = {}
        for user, reset_id, keyword in cur.execute(
                f"SELECT user_id, reset_id, keyword FROM active_resets {mine} ORDER BY reset_id",
                who).fetchall():
            resets[user] = (*resets.get(user, ()), ResetFact(reset_id, keyword))
        rows: dict[tuple[str, str], dict[str, dict[str, _Row]]] = {}
        for user, keyword, kind, arm, *values in found:
            by_arm = rows.setdefault((kind, keyword), {}).setdefault(user, {})
            by_arm[arm] = (*values, seqs.get(user, 0))
        with self._lock:
            if user_id is None:
                self._rows, self._seqs, self._resets = rows, seqs, resets
                return len(found)
            for by_user in self._rows.values():
                by_user.pop(user_id, None)
            for key, by_user in rows.items():
                self._rows.setdefault(key, {}).update(by_user)
            self._seqs.pop(user_id, None)
            self._seqs.update(seqs)
            self._resets.pop(user_id, None)
            self._resets.update(resets)
        return len(found)

    def changes(self) -> AggregateChanges:
        """A collector for one write transaction."""
        return AggregateChanges(self)

    def apply(self, changes: AggregateChanges) -> None:
        """Add a committed transaction's changes (called on the writer thread after COMMIT)."""
        half_life = self.half_life
        with self._lock:
            self._seqs.update(changes.review_seqs)
            for user_id, (keyword, kind, arm), seq, counts, weights in changes.rows:
                by_arm = self._rows.setdefault((kind, keyword), {}).setdefault(user_id, {})
                shown, selected, rejected, w_shown, w_selected, w_rejected, row_seq = by_arm.get(
                    arm, (0, 0, 0, 0.0, 0.0, 0.0, seq))
                factor = decay_factor(seq - row_seq, half_life)
                by_arm[arm] = (
                    shown + counts[0], selected + counts[1], rejected + counts[2],
                    w_shown * factor + weights[0], w_selected * factor + weights[1],
                    w_rejected * factor + weights[2], seq,
                )
        for user_id, (keyword, kind, arm), seq, counts, weights in changes.rows:
            if keyword != ALL_KEYWORDS and weights == (float(counts[0]), float(counts[1]), float(counts[2])):
                # feedback (an import's decayed counts are old evidence, not recent)
                self.taste_changes.add(user_id, kind, keyword, arm, seq, weights[0], weights[1])

    def forget_recent(self, user_id: str, keyword: str | None) -> None:
        """A reset: the recent counts and restarts of the keyword (None: all) start afresh."""
        self.taste_changes.forget(user_id, keyword)

    # reads ------------------------------------------------------------------------------

    def active_resets(self, user_id: str) -> tuple[ResetFact, ...]:
        with self._lock:
            return self._resets.get(user_id, ())

    def row_count(self, user_id: str, keyword: str | None) -> int:
        """How many rows the user has for the keyword (None: every keyword and '*')."""
        with self._lock:
            return sum(len(by_user.get(user_id, {})) for (_, kw), by_user in self._rows.items()
                       if keyword is None or kw == keyword)

    def review_seq(self, user_id: str) -> int:
        with self._lock:
            return self._seqs.get(user_id, 0)

    def total_reviews(self, user_id: str | None) -> int:
        """How many batches the user (or everyone) has reviewed."""
        with self._lock:
            if user_id is None:
                return sum(self._seqs.values())
            return self._seqs.get(user_id, 0)

    def arm_stats(
        self,
        user_id: str | None,
        kind: ArmKind,
        keywords: Sequence[str],
        arms: Sequence[str] | None = None,
    ) -> dict[tuple[str, str], ArmStat]:
        """(keyword, arm) → evidence decayed to each user's current seq, summed over users."""
        if not keywords or (arms is not None and not arms):
            return {}
        wanted = None if arms is None else frozenset(arms)
        sums: dict[tuple[str, str], list[float]] = {}
        with self._lock:
            for keyword in dict.fromkeys(keywords):
                for arm, row, factor in self._decayed_rows(user_id, kind, keyword):
                    if wanted is not None and arm not in wanted:
                        continue
                    total = sums.setdefault((keyword, arm), [0.0, 0.0, 0.0])
                    total[0] += row[W_SHOWN] * factor
                    total[1] += row[W_SELECTED] * factor
                    total[2] += row[W_REJECTED] * factor
        return {key: ArmStat(*total) for key, total in sums.items()}

    def arm_evidence(
        self, user_id: str | None, kind: ArmKind, keywords: Sequence[str], arms: Sequence[str]
    ) -> dict[tuple[str, str], ArmStat]:
        """`arm_stats` with changes of taste followed (`learning.store.taste_changes`); the view
        across users (None) is the plain one."""
        stats = self.arm_stats(user_id, kind, keywords, arms)
        if user_id is None:
            return stats
        return self.taste_changes.evidence(user_id, kind, keywords, arms, stats, self.review_seq(user_id))

    def recent_taste_changes(self, user_id: str | None, kind: ArmKind, keywords: Sequence[str]) -> tuple[str, ...]:
        """Those of `keywords` whose evidence restarted lately after a change of taste."""
        if user_id is None:
            return ()
        return self.taste_changes.recently_restarted(user_id, kind, keywords, self.review_seq(user_id))

    def base_rate(self, user_id: str | None, kind: ArmKind) -> ArmStat:
        """Decayed totals over every arm of the kind, from the all-prompts ('*') rows."""
        return sum_stats(self.arm_stats(user_id, kind, [ALL_KEYWORDS]).values())

    def arm_totals(self, user_id: str | None, kind: ArmKind) -> dict[str, dict[str, float | int]]:
        """{arm: {"selected", "total", "selection_rate"}} over all prompts, plain counts; arms
        never shown left out; best rate first, then by name."""
        totals: dict[str, list[int]] = {}
        with self._lock:
            for arm, row, _ in self._decayed_rows(user_id, kind, ALL_KEYWORDS):
                total = totals.setdefault(arm, [0, 0])
                total[0] += row[SELECTED]
                total[1] += row[SHOWN]
        rates = {arm: (selected, shown, selected / shown)
                 for arm, (selected, shown) in totals.items() if shown > 0}
        return {
            arm: {"selected": selected, "total": shown, "selection_rate": rate}
            for arm, (selected, shown, rate) in sorted(rates.items(),
                                                       key=lambda item: (-item[1][2], item[0]))
        }

    def rows_now(self) -> list[RowNow]:
        """Every row with its decayed counts brought to its user's current seq."""
        with self._lock:
            return [
                (user_id, keyword, kind, arm, row[SHOWN], row[SELECTED], row[REJECTED],
                 row[W_SHOWN] * factor, row[W_SELECTED] * factor, row[W_REJECTED] * factor)
                for (kind, keyword), by_user in self._rows.items()
                for user_id, by_arm in by_user.items()
                for arm, row in by_arm.items()
                for factor in (self._row_factor(user_id, row),)
            ]

    def review_seqs(self) -> dict[str, int]:
        with self._lock:
            return dict(self._seqs)

    def _decayed_rows(
        self, user_id: str | None, kind: str, keyword: str
    ) -> Iterator[tuple[str, _Row, float]]:
        """(arm, row, decay factor to now) of one keyword, for one user or all (lock held)."""
        by_user = self._rows.get((kind, keyword), {})
        users = by_user.items() if user_id is None else [(user_id, by_user.get(user_id, {}))]
        for user, by_arm in users:
            for arm, row in by_arm.items():
                yield arm, row, self._row_factor(user, row)

    def _row_factor(self, user_id: str, row: _Row) -> float:
        return decay_factor(self._seqs.get(user_id, 0) - row[SEQ], self.half_life)
