"""The decay rule, once in Python and once in SQL, side by side: w * 0.5 ** (elapsed / half_life).

Evidence from a review `elapsed` reviews ago weighs `0.5 ** (elapsed / half_life)` (half_life in
reviews). Python code decays with `decay_factor()` (the in-memory aggregates, the in-memory
evidence store); SQL decays with the `decayed` macro that the schema installs from
`DECAYED_MACRO`, and queries spell their calls with the fragments below. tests/learning/
test_store_agreement.py holds the two definitions to the same numbers over a grid of
(elapsed, half_life).

The macro lives in the database file: a file keeps the macro text of the migration that created
it, so changing the rule means changing both definitions here AND adding a migration that runs
`CREATE OR REPLACE MACRO decayed ...` on existing files.
"""

from __future__ import annotations

from typing import Sequence

# The decayed counts of an aggregate row, in the order (shown, selected, rejected).
DECAYED_COLUMNS = ("w_shown", "w_selected", "w_rejected")


def decay_factor(elapsed_reviews: float, half_life: float) -> float:
    """The weight, now, of evidence recorded `elapsed_reviews` reviews ago."""
    return 0.5 ** (elapsed_reviews / half_life)


DECAYED_MACRO = """CREATE MACRO decayed(w, elapsed_reviews, half_life) AS
        w * pow(0.5, elapsed_reviews / half_life)"""


def decayed_sql(value: str, elapsed: str, half_life: str) -> str:
    """SQL for `value` decayed over `elapsed` reviews (all three are SQL expressions)."""
    return f"decayed({value}, {elapsed}, {half_life})"


def decayed_counts_sql(
    values: Sequence[str], elapsed: str, half_life: str, aggregate: str | None = None
) -> str:
    """The select-list `decayed(v, elapsed, half_life) AS w_shown, ...` for three decayed counts
    (shown, selected, rejected), each wrapped in `aggregate` (e.g. "sum") when given."""
    terms = []
    for value, name in zip(values, DECAYED_COLUMNS, strict=True):
        term = decayed_sql(value, elapsed, half_life)
        terms.append(f"{aggregate}({term}) AS {name}" if aggregate else f"{term} AS {name}")
    return ",\n        ".join(terms)


def decayed_to_now_sql(row: str, half_life: str, aggregate: str | None = None) -> str:
    """The decayed counts of aggregate row alias `row` (stated as of its `review_seq`) brought to
    its user's current review_seq; the query must LEFT JOIN user_state as `u`."""
    return decayed_counts_sql([f"{row}.{name}" for name in DECAYED_COLUMNS],
                              f"coalesce(u.review_seq, 0) - {row}.review_seq", half_life,
                              aggregate)
