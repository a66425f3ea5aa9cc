"""Sharing preferences with the crowd: the deployment's switch, each user's opt-in, and the crowd prior's input.

Only where the deployment pools preferences (`--share-preferences`) AND a user opted in (Stats tab,
`PUT /api/preferences/sharing`) do that user's aggregates join the crowd pool. Receiving the prior
needs the deployment switch only: it shows a user nothing of anyone (pooled sums of at least two
other users, learning.store.crowd_pool) and asks nothing of them, so a new user gets a better first
grid without first deciding about their own data. A user's choice is kept even while the deployment
switch is off, and honoured once it is on. The prior itself is `learning.recommend.crowd`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from learning.recommend.planner import CrowdEvidence
from learning.store.preference_store import PreferenceStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SharingState:
    """A user's choice and the deployment's switch, as the REST API and the Stats tab show them."""

    share: bool  # the user's choice in force
    enabled: bool  # the deployment pools preferences (--share-preferences)
    changed: bool = False  # the call that answered this changed the choice

    def as_json(self) -> dict[str, bool]:
        return {"share": self.share, "enabled": self.enabled, "changed": self.changed}


class PreferenceSharing:
    """The deployment's switch over the store's sharing choices and crowd pool."""

    def __init__(self, store: PreferenceStore, enabled: bool) -> None:
        self._store = store
        self.enabled = enabled
        if enabled:
            store.rebuild_crowd_pool()  # read once at start, so the first recommendation does not wait on it
        log.info("preference sharing %s", "on: opted-in users' preferences give others a crowd prior" if enabled
                 else "off (--share-preferences): no crowd prior, nothing pooled")

    def state(self, user_id: str) -> SharingState:
        return SharingState(self._store.shares_preferences(user_id), self.enabled)

    def set(self, user_id: str, share: bool) -> SharingState:
        changed = self._store.set_sharing(user_id, share)
        return SharingState(share, self.enabled, changed)

    def crowd_for(self, user_id: str, keywords: Sequence[str], pool: Sequence[str]) -> CrowdEvidence | None:
        """Other users' pooled picks for these keywords × checkpoints and the user's own long-run
        evidence, or None when the deployment does not pool or the pool has nothing for them."""
        if not self.enabled:
            return None
        pooled = self._store.crowd_evidence(user_id, keywords, pool)
        if not pooled:
            return None
        return CrowdEvidence(pooled, self._store.arm_stats(user_id, "checkpoint", keywords, pool))
