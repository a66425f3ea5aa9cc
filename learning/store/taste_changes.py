"""Changes of taste: recent evidence next to the long-run one, a change test, and restarts.

The long-run evidence (the aggregates, decayed with the store's half-life, ~100 reviews) stays the
slow baseline. Next to it this keeps a fast-decayed copy of the same counts per (user, kind,
keyword, arm), half-life `RECENT_HALF_LIFE` reviews. When a plan reads a keyword's evidence
(`evidence`), the change test compares each arm's recent selection rate with its long-run one
(`change_statistic`: a likelihood-ratio statistic, 2·n·KL(recent ‖ long-run)); when it fires for
any arm, the prompt's keywords restart (they saw the same images): everything learnt for them
before that moment, less the recent reviews that showed the change, keeps the weight of only
`KEPT_IMAGES` images per arm, a weak prior (and decays on as usual), their recent counts start afresh, and one log line says why.
So a favourite the user has stopped picking stops being exploited within a batch or two, and the
policy explores the pool again for that keyword, where the half-life alone would need ~100 reviews.

The test runs when evidence is read for a plan, not on each click: halfway through reviewing a
batch every image already counts as shown while its selections are still coming, which would
read as a drop. A restart is derived state kept in memory (like the aggregates' in-memory copy,
but not rebuilt from the facts): a restarted app forgets its restarts and recent counts, and the
test fires again within a few reviews if the taste is still changed. The long-run aggregates, the
stats and the rebuild are never touched.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Mapping, Sequence

from learning.models import ArmStat
from learning.store.decay import decay_factor

log = logging.getLogger(__name__)

RECENT_HALF_LIFE = 1.0  # reviews: the recent counts weigh the last batch 1, the one before 1/2, ...
CHANGE_THRESHOLD = 10.8  # 2·n·KL above the χ²(1) 99.9 % quantile
MIN_RECENT_IMAGES = 6.0  # an arm needs this much recent evidence to be tested
MIN_RATE_GAP = 0.15  # ... and a recent rate this far from its long-run one
KEPT_IMAGES = 4.0  # what was learnt before a restart stays worth this many images per arm: a weak prior
COOLDOWN_REVIEWS = 3  # reviews after a restart before the keyword is tested again

EvidenceKey = tuple[str, str]  # (keyword, arm)
_Cell = tuple[float, float, int]  # (shown, selected) decayed as of review seq


def change_statistic(long_run: ArmStat, recent: ArmStat) -> float:
    """How strongly an arm's recent reviews contradict its long-run rate (0: not at all / too few).

    Both rates are lightly smoothed; the statistic is 2·n·KL(recent ‖ long-run) for the recent
    evidence n, roughly χ²(1) when nothing changed.
    """
    n = recent.shown
    if n < MIN_RECENT_IMAGES:
        return 0.0
    r = (max(recent.selected, 0.0) + 0.5) / (n + 1.0)
    p = (max(long_run.selected, 0.0) + 0.5) / (max(long_run.shown, 0.0) + 1.0)
    if abs(r - p) < MIN_RATE_GAP:
        return 0.0
    return 2.0 * n * (r * math.log(r / p) + (1.0 - r) * math.log((1.0 - r) / (1.0 - p)))


class TasteChanges:
    """Recent counts and restarts for one evidence holder (the store's memory, or the bench's)."""

    def __init__(self, half_life: float | None) -> None:
        self.half_life = half_life  # the long-run one, None = never decays
        self._lock = threading.Lock()
        self._recent: dict[tuple[str, str, str], dict[str, _Cell]] = {}
        # (user, kind, keyword) → (seq of the restart, arm → long-run (shown, selected) then)
        self._restarts: dict[tuple[str, str, str], tuple[int, dict[str, tuple[float, float]]]] = {}

    def add(self, user_id: str, kind: str, keyword: str, arm: str, seq: int, shown: float, selected: float) -> None:
        """A committed change of one (keyword, arm) count, at the user's review seq."""
        with self._lock:
            cells = self._recent.setdefault((user_id, kind, keyword), {})
            old_shown, old_selected, old_seq = cells.get(arm, (0.0, 0.0, seq))
            w = decay_factor(seq - old_seq, RECENT_HALF_LIFE)
            cells[arm] = (old_shown * w + shown, old_selected * w + selected, seq)

    def evidence(
        self,
        user_id: str,
        kind: str,
        keywords: Sequence[str],
        arms: Sequence[str],
        long_run: Mapping[EvidenceKey, ArmStat],
        now: int,
    ) -> dict[EvidenceKey, ArmStat]:
        """`long_run` with the evidence from before each keyword's last restart discounted,
        restarting the keywords whose recent reviews contradict it (logged, one line each)."""
        stems = list(dict.fromkeys(keywords))
        with self._lock:
            fired = next((why for kw in stems if (why := self._changed((user_id, kind, kw), kw, arms, long_run, now))), None)
            if fired is not None:
                # the prompt's keywords saw the same images: a change seen through one is a change for all
                for kw in stems:
                    self._restart((user_id, kind, kw), kw, arms, long_run, now)
                log.info("taste change: user=%s %s %s; restarting %s: what was learnt before keeps the "
                         "weight of %g images per checkpoint, exploring again", user_id, kind, fired, stems, KEPT_IMAGES)
            out = dict(long_run)
            for kw in stems:
                out.update(self._adjusted((user_id, kind, kw), kw, arms, long_run, now))
        return out

    def forget(self, user_id: str, keyword: str | None) -> None:
        """Drop the recent counts and restarts of a keyword (None: every keyword) of the user:
        what a reset removed is no baseline to compare new reviews with."""
        with self._lock:
            for store in (self._recent, self._restarts):
                for key in [k for k in store if k[0] == user_id and keyword in (None, k[2])]:
                    del store[key]

    def recently_restarted(self, user_id: str, kind: str, keywords: Sequence[str], now: int) -> tuple[str, ...]:
        """Those of `keywords` restarted within the last `COOLDOWN_REVIEWS` reviews (exploring again)."""
        with self._lock:
            return tuple(kw for kw in dict.fromkeys(keywords)
                         if (restart := self._restarts.get((user_id, kind, kw))) is not None
                         and now - restart[0] < COOLDOWN_REVIEWS)

    # ------------------------------------------------------------------ under the lock
    def _restart(self, key: tuple[str, str, str], keyword: str, arms: Sequence[str],
                 long_run: Mapping[EvidenceKey, ArmStat], now: int) -> None:
        """Remember what was learnt before now, without the recent reviews that showed the
        change (they are the new taste's first evidence), and start the recent counts afresh."""
        cells = self._recent.pop(key, {})
        before = {}
        for arm in arms:
            stat = long_run.get((keyword, arm))
            if stat is None:
                continue
            shown, selected, seq = cells.get(arm, (0.0, 0.0, now))
            w = decay_factor(now - seq, RECENT_HALF_LIFE)
            before[arm] = (max(stat.shown - shown * w, 0.0), max(stat.selected - selected * w, 0.0))
        self._restarts[key] = (now, before)

    def _adjusted(self, key: tuple[str, str, str], keyword: str, arms: Sequence[str],
                  long_run: Mapping[EvidenceKey, ArmStat], now: int) -> dict[EvidenceKey, ArmStat]:
        found = {(keyword, arm): long_run[(keyword, arm)] for arm in arms if (keyword, arm) in long_run}
        restart = self._restarts.get(key)
        if restart is None:
            return found
        seq, before = restart
        fade = 1.0 if self.half_life is None else decay_factor(now - seq, self.half_life)
        adjusted = {}
        for (kw, arm), stat in found.items():
            old_shown, old_selected = before.get(arm, (0.0, 0.0))
            dropped = fade * (1.0 - min(1.0, KEPT_IMAGES / old_shown)) if old_shown > 0 else 0.0
            shown = max(stat.shown - dropped * old_shown, 0.0)
            selected = min(max(stat.selected - dropped * old_selected, 0.0), shown)
            adjusted[(kw, arm)] = ArmStat(shown, selected, stat.rejected)
        return adjusted

    def _changed(self, key: tuple[str, str, str], keyword: str, arms: Sequence[str],
                 long_run: Mapping[EvidenceKey, ArmStat], now: int) -> str | None:
        """Why this keyword's recent reviews contradict what it learnt (None: they do not)."""
        restart = self._restarts.get(key)
        if restart is not None and now - restart[0] < COOLDOWN_REVIEWS:
            return None
        cells = self._recent.get(key, {})
        for (_, arm), stat in self._adjusted(key, keyword, arms, long_run, now).items():
            if arm not in cells:
                continue
            shown, selected, seq = cells[arm]
            w = decay_factor(now - seq, RECENT_HALF_LIFE)
            recent = ArmStat(shown * w, selected * w)
            statistic = change_statistic(stat, recent)
            if statistic > CHANGE_THRESHOLD:
                long_rate = stat.selected / stat.shown if stat.shown else 0.0
                return (f"keyword {keyword!r}: {arm} recent {100 * recent.selected / recent.shown:.0f}% of "
                        f"{recent.shown:.1f} images vs {100 * long_rate:.0f}% long-run "
                        f"(statistic {statistic:.1f} > {CHANGE_THRESHOLD})")
        return None
