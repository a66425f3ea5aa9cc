"""Who shares their preferences with the crowd: the facts of each user's choice, and the current one.

A choice is a fact (`preference_sharing`, one row per change of mind, appended); the latest row of a
user is in force and a user without rows does not share. Setting what is already in force writes
nothing, so the call is idempotent. Whether the deployment pools anything at all is not the store's
business (`--share-preferences`, draftgrid/sharing.py): the store keeps the choice either way.
"""

from __future__ import annotations

import logging
from datetime import datetime

import duckdb

log = logging.getLogger(__name__)

# The users whose latest choice is to share: the crowd's members (learning.store.crowd_pool).
SHARING_USERS_SQL = """SELECT user_id FROM preference_sharing
                       GROUP BY user_id HAVING arg_max(share, choice_id)"""


def shares(cur: duckdb.DuckDBPyConnection, user_id: str) -> bool:
    """The user's choice in force (False until they opt in)."""
    rows = cur.execute(
        "SELECT arg_max(share, choice_id) FROM preference_sharing WHERE user_id = ?", [user_id]
    ).fetchall()
    return bool(rows and rows[0][0])


def set_sharing(cur: duckdb.DuckDBPyConnection, user_id: str, share: bool, now: datetime) -> bool:
    """Record the user's choice (writer thread, inside its transaction); True when it changed."""
    if shares(cur, user_id) == share:
        return False
    cur.execute("INSERT INTO preference_sharing (user_id, share, created_at) VALUES (?, ?, ?)",
                [user_id, share, now])
    log.info("preference sharing: user=%s %s", user_id,
             "opted in: their aggregates join the crowd pool" if share else "opted out: their aggregates leave the crowd pool")
    return True
