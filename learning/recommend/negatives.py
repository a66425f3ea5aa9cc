"""Negative-prompt suggestions from the user's own history (pure).

A term of past negative prompts (the `negative-term` arms, `learning.arms.negative_terms`) is
suggested for a prompt when, for one of its keywords, images made with the term were selected
clearly more often than that keyword's images without it: lift ≥ `MIN_LIFT`, each side backed by
at least `MIN_IMAGES` reviewed images (decayed). Terms already in the negative prompt and terms
the user dismissed for the keyword are left out. Suggestions are only offered (chips, REST):
nothing is added to a prompt without a click.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from learning.models import ArmStat

MIN_IMAGES = 8.0
MIN_LIFT = 0.05
MAX_SUGGESTIONS = 5


@dataclass(frozen=True)
class NegativeSuggestion:
    term: str
    keyword: str  # the keyword whose history backs it
    rate_with: float
    rate_without: float
    images_with: float

    def as_json(self) -> dict:
        return {"term": self.term, "keyword": self.keyword, "rate_with": round(self.rate_with, 4),
                "rate_without": round(self.rate_without, 4), "images_with": round(self.images_with, 2)}


def suggest_negatives(
    keywords: Sequence[str],
    term_evidence: Mapping[tuple[str, str], ArmStat],
    keyword_totals: Mapping[str, ArmStat],
    present: Collection[str],
    dismissed: Collection[tuple[str, str]],
) -> list[NegativeSuggestion]:
    """Best lift first; one suggestion per term (its best-backed keyword)."""
    best: dict[str, NegativeSuggestion] = {}
    for (keyword, term), with_term in term_evidence.items():
        total = keyword_totals.get(keyword)
        if keyword not in keywords or term in present or (keyword, term) in dismissed or total is None:
            continue
        shown_without = total.shown - with_term.shown
        if with_term.shown < MIN_IMAGES or shown_without < MIN_IMAGES:
            continue
        rate_with = with_term.selected / with_term.shown
        rate_without = (total.selected - with_term.selected) / shown_without
        if rate_with - rate_without < MIN_LIFT:
            continue
        found = NegativeSuggestion(term, keyword, rate_with, rate_without, with_term.shown)
        kept = best.get(term)
        if kept is None or found.rate_with - found.rate_without > kept.rate_with - kept.rate_without:
            best[term] = found
    ranked = sorted(best.values(), key=lambda s: (-(s.rate_with - s.rate_without), s.term))
    return ranked[:MAX_SUGGESTIONS]
