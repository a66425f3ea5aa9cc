"""Resetting what was learnt for a keyword (or everything), and undoing it.

The store records both as facts (learning/store/resets.py); here a keyword as the user typed it
becomes the stem the preferences are kept under, and the store's errors become 422 / 404.
"""

from __future__ import annotations

from draftgrid.errors import InvalidRequest, NotFound
from draftgrid.schemas import ResetRequest
from learning.keywords import parse_prompt
from learning.models import ResetRecord, ResetResult
from learning.store.errors import UnknownResetError
from learning.store.preference_store import PreferenceStore

MAX_RESET_DIGITS = 18  # reset ids are BIGINTs


def keyword_stem(text: str) -> str:
    """"Portraits" → "portrait": the stem when the text is one keyword, else the text lowercased."""
    stems = [keyword.stem for keyword in parse_prompt(text).keywords]
    return stems[0] if len(stems) == 1 else text.lower()


class PreferenceResets:
    """Resets and undos of one user's preferences, validated for REST and the UI alike."""

    def __init__(self, store: PreferenceStore) -> None:
        self._store = store

    def reset(self, user_id: str, req: ResetRequest) -> ResetResult:
        keyword = None if req.keyword is None else keyword_stem(req.keyword)
        try:
            return self._store.reset_preferences(user_id, keyword)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from exc

    def undo(self, user_id: str, reset_id: str) -> ResetResult:
        """Unknown, malformed or another user's reset ids are all 404."""
        unknown = NotFound(f"unknown reset {reset_id!r}")
        if not (reset_id.isascii() and reset_id.isdigit() and len(reset_id) <= MAX_RESET_DIGITS):
            raise unknown
        try:
            return self._store.undo_reset(user_id, int(reset_id))
        except UnknownResetError as exc:
            raise unknown from exc

    def resets(self, user_id: str) -> list[ResetRecord]:
        return self._store.resets(user_id)
