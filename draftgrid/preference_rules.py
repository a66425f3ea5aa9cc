"""The user's rules about learning's suggestions, as the UI and REST see them: LoRA vetoes per
keyword and dismissed negative-term suggestions (facts in the store: learning.store.rules).

A rule's keyword is stored as its stem, like the statistics ("portraits" vetoes for "portrait").
Reading the rules is their export; replacing them (PUT) is their import.
"""

from __future__ import annotations

from collections.abc import Sequence

from draftgrid.errors import InvalidRequest
from learning.keywords import parse_prompt
from learning.models import RuleKind
from learning.store.preference_store import PreferenceStore

# rule kind → the name of the rule's subject in JSON
SUBJECT_FIELDS: dict[RuleKind, str] = {"lora-veto": "lora", "negative-dismissal": "term"}


def keyword_stem(keyword: str) -> str:
    """The stem a rule is stored under; InvalidRequest for a keyword with no content word."""
    stems = [k.stem for k in parse_prompt(keyword).keywords if " " not in k.stem]
    if len(stems) != 1:
        raise InvalidRequest(f"keyword {keyword!r} must be one content word (e.g. 'portrait')")
    return stems[0]


class PreferenceRules:
    def __init__(self, store: PreferenceStore) -> None:
        self._store = store

    def rules(self, user_id: str, kind: RuleKind) -> list[dict[str, str]]:
        field = SUBJECT_FIELDS[kind]
        return [{"keyword": keyword, field: subject} for keyword, subject in self._store.rules(user_id, kind)]

    def set_rule(self, user_id: str, kind: RuleKind, keyword: str, subject: str, active: bool) -> list[dict[str, str]]:
        self._store.set_rule(user_id, kind, keyword_stem(keyword), subject, active)
        return self.rules(user_id, kind)

    def replace_rules(self, user_id: str, kind: RuleKind, wanted: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
        self._store.replace_rules(user_id, kind, [(keyword_stem(k), s) for k, s in wanted])
        return self.rules(user_id, kind)
