"""A user's rules about what learning may suggest: LoRA vetoes and dismissed negative terms.

Each rule is a fact (`preference_rules`, one row per change of mind, appended): a `lora-veto` says
"never use this LoRA for this keyword", a `negative-dismissal` "stop suggesting this negative term
for this keyword". The latest row per (user, kind, keyword, subject) is in force; setting what is
already in force writes nothing. Exports carry the rules in force; an import adds them as facts.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import get_args

import duckdb

from learning.models import RuleKind

log = logging.getLogger(__name__)

RULE_KINDS: tuple[RuleKind, ...] = get_args(RuleKind)

_IN_FORCE = """
SELECT keyword, subject FROM preference_rules
WHERE user_id = $user_id AND kind = $kind
GROUP BY keyword, subject HAVING arg_max(active, rule_id)
ORDER BY keyword, subject"""


def rules_in_force(cur: duckdb.DuckDBPyConnection, user_id: str, kind: RuleKind) -> tuple[tuple[str, str], ...]:
    """The user's (keyword, subject) pairs of this kind in force, sorted."""
    return tuple((k, s) for k, s in cur.execute(_IN_FORCE, {"user_id": user_id, "kind": kind}).fetchall())


def set_rule(cur: duckdb.DuckDBPyConnection, user_id: str, kind: RuleKind, keyword: str, subject: str,
             active: bool, now: datetime) -> bool:
    """Record one rule (writer thread, inside its transaction); True when it changed."""
    if kind not in RULE_KINDS:
        raise ValueError(f"rule kind must be one of {', '.join(RULE_KINDS)}, not {kind!r}")
    keyword, subject = keyword.strip().lower(), subject.strip()
    if not keyword or not subject:
        raise ValueError("a rule needs a keyword and a subject")
    if ((keyword, subject) in rules_in_force(cur, user_id, kind)) == active:
        return False
    cur.execute("INSERT INTO preference_rules (user_id, kind, keyword, subject, active, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)", [user_id, kind, keyword, subject, active, now])
    log.info("rule %s for user=%s: %s %r for keyword %r", "set" if active else "lifted", user_id, kind, subject, keyword)
    return True


def set_rules(cur: duckdb.DuckDBPyConnection, user_id: str, kind: RuleKind,
              wanted: tuple[tuple[str, str], ...], now: datetime) -> int:
    """Make exactly `wanted` the rules of this kind in force (a PUT); return how many changed."""
    current = set(rules_in_force(cur, user_id, kind))
    target = {(k.strip().lower(), s.strip()) for k, s in wanted}
    changed = 0
    for keyword, subject in sorted(current - target):
        changed += set_rule(cur, user_id, kind, keyword, subject, False, now)
    for keyword, subject in sorted(target - current):
        changed += set_rule(cur, user_id, kind, keyword, subject, True, now)
    return changed
