"""DDL of the preference store and the migrations that bring any older file up to date.

Each migration is applied in its own transaction (DuckDB DDL is transactional), so a crash or a
failing step leaves the file at the previous version, never half-migrated.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import duckdb

from learning.store.counting_write_path import CLICK_ACTIONS, FAVOURITE_MARKS, STATE_CLICKS
from learning.store.decay import DECAYED_MACRO, decayed_to_now_sql
from learning.store.errors import SchemaTooNewError, StoreError
from learning.store.timestamps import utc_now

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Migration:
    """One schema step: `version` is what the file is at after `statements` ran."""

    version: int
    description: str
    statements: tuple[str, ...]


# A user's evidence for one (keyword, arm): plain and decayed counts.
_EVIDENCE_COLUMNS = """
        user_id VARCHAR NOT NULL,
        keyword VARCHAR NOT NULL,
        arm_kind VARCHAR NOT NULL CHECK (arm_kind IN ('checkpoint', 'lora')),
        arm VARCHAR NOT NULL,
        shown BIGINT NOT NULL,
        selected BIGINT NOT NULL,
        rejected BIGINT NOT NULL,
        w_shown DOUBLE NOT NULL,
        w_selected DOUBLE NOT NULL,
        w_rejected DOUBLE NOT NULL"""
_AGGREGATE_COLUMNS = f"""{_EVIDENCE_COLUMNS},
        review_seq BIGINT NOT NULL,
        updated_at TIMESTAMP NOT NULL"""

_FACTS_AND_AGGREGATES = (
    # One ordering for every fact that can change an aggregate (feedback rows, image finishes,
    # imports), so rebuilding replays them in exactly the order they were applied.
    "CREATE SEQUENCE fact_seq START 1",
    """CREATE TABLE batches (
        batch_id VARCHAR PRIMARY KEY,
        user_id VARCHAR NOT NULL,
        session_id VARCHAR NOT NULL,
        prompt VARCHAR NOT NULL,
        negative_prompt VARCHAR NOT NULL,
        keywords VARCHAR[] NOT NULL,
        tier VARCHAR NOT NULL CHECK (tier IN ('draft', 'standard', 'quality')),
        family VARCHAR NOT NULL,
        explore_mode BOOLEAN NOT NULL,
        auto_lora BOOLEAN NOT NULL,
        strategy VARCHAR NOT NULL,
        recommended VARCHAR NOT NULL,
        confidence DOUBLE NOT NULL,
        count INTEGER NOT NULL,
        policy VARCHAR NOT NULL,
        parent_batch_id VARCHAR,
        created_at TIMESTAMP NOT NULL,
        reviewed_at TIMESTAMP
    )""",
    """CREATE TABLE images (
        image_id VARCHAR PRIMARY KEY,
        batch_id VARCHAR NOT NULL,
        user_id VARCHAR NOT NULL,
        checkpoint VARCHAR NOT NULL,
        loras STRUCT(name VARCHAR, strength DOUBLE)[] NOT NULL,
        seed BIGINT NOT NULL,
        batch_index INTEGER NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        steps INTEGER NOT NULL,
        cfg DOUBLE NOT NULL,
        sampler_name VARCHAR NOT NULL,
        scheduler VARCHAR NOT NULL,
        denoise DOUBLE NOT NULL,
        hires_scale DOUBLE,
        parent_image_id VARCHAR,
        status VARCHAR NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed')),
        server VARCHAR,
        path VARCHAR,
        error VARCHAR,
        seconds DOUBLE,
        created_at TIMESTAMP NOT NULL,
        finished_at TIMESTAMP,
        finished_seq BIGINT
    )""",
    "CREATE INDEX images_batch_idx ON images (batch_id)",
    """CREATE TABLE feedback (
        feedback_id BIGINT NOT NULL DEFAULT nextval('fact_seq'),
        user_id VARCHAR NOT NULL,
        batch_id VARCHAR NOT NULL,
        image_id VARCHAR,
        action VARCHAR NOT NULL
            CHECK (action IN ('select', 'unselect', 'reject', 'reject_all', 'viewed')),
        created_at TIMESTAMP NOT NULL
    )""",
    "CREATE INDEX feedback_batch_idx ON feedback (batch_id)",
    f"""CREATE TABLE imported_stats (
        import_id BIGINT NOT NULL,{_EVIDENCE_COLUMNS},
        imported_at TIMESTAMP NOT NULL
    )""",
    f"""CREATE TABLE preference_stats ({_AGGREGATE_COLUMNS},
        PRIMARY KEY (user_id, keyword, arm_kind, arm)
    )""",
    # Reads look rows up by keyword; DuckDB uses a single-column index for `keyword IN (...)`.
    "CREATE INDEX preference_stats_keyword_idx ON preference_stats (keyword)",
    # Changes not yet folded into preference_stats, same meaning per row. Appending costs
    # ~0.7 ms where an upsert into the keyed table scans it (DuckDB plans ON CONFLICT as a
    # MERGE over the whole table); the store folds these in every few hundred writes.
    f"CREATE TABLE preference_stats_pending ({_AGGREGATE_COLUMNS})",
    "CREATE INDEX preference_stats_pending_keyword_idx ON preference_stats_pending (keyword)",
    "CREATE TABLE user_state (user_id VARCHAR PRIMARY KEY, review_seq BIGINT NOT NULL)",
    # Decayed counts are stored as of a review_seq; this brings them to a later one. The SQL
    # twin of decay_factor(), both in learning.store.decay.
    DECAYED_MACRO,
    # The aggregates as seen now: kept and pending rows summed, every decayed count brought to
    # its user's current review_seq. The SQL reads of the aggregates (loading the in-memory
    # copy, exports, the stats tables, the checks) go through this; the reference reader's
    # arm_stats spells the same decay out per branch (learning.store.aggregates_reference_sql).
    f"""CREATE MACRO preference_stats_now(half_life) AS TABLE
        SELECT a.user_id, a.keyword, a.arm_kind, a.arm,
               sum(a.shown)::BIGINT AS shown, sum(a.selected)::BIGINT AS selected,
               sum(a.rejected)::BIGINT AS rejected,
               {decayed_to_now_sql("a", "half_life", aggregate="sum")}
        FROM (SELECT user_id, keyword, arm_kind, arm, shown, selected, rejected,
                     w_shown, w_selected, w_rejected, review_seq FROM preference_stats
              UNION ALL
              SELECT user_id, keyword, arm_kind, arm, shown, selected, rejected,
                     w_shown, w_selected, w_rejected, review_seq FROM preference_stats_pending) a
        LEFT JOIN user_state u USING (user_id)
        GROUP BY a.user_id, a.keyword, a.arm_kind, a.arm""",
    # The selection rule in SQL, shared by every query here (image_current_state, hence
    # generation_logs) and the rebuild: the last click decides, except that a Reject-all after
    # the last click rejects an image that was not selected. The write path and batch snapshots
    # apply the same rule in Python (learning.store.counting_write_path.fold_states); the
    # hypothesis test in tests/learning/test_store_agreement.py holds the two equal.
    """CREATE MACRO feedback_state(last_click, last_click_ord, last_reject_all_ord) AS
        CASE
            WHEN last_click = 'select' THEN 'selected'
            WHEN last_click = 'reject' THEN 'rejected'
            WHEN last_reject_all_ord > coalesce(last_click_ord, -1) THEN 'rejected'
            ELSE 'none'
        END""",
    # Current state of every image that has feedback; a filter on batch_id pushes down.
    """CREATE VIEW image_current_state AS
        WITH clicks AS (
            SELECT batch_id, image_id,
                   arg_max(action, feedback_id) AS last_click,
                   max(feedback_id) AS last_click_ord
            FROM feedback
            WHERE action IN ('select', 'unselect', 'reject')
            GROUP BY batch_id, image_id
        ),
        reject_alls AS (
            SELECT i.batch_id, i.image_id, max(f.feedback_id) AS last_reject_all_ord
            FROM feedback f JOIN images i
              ON i.batch_id = f.batch_id AND i.finished_seq < f.feedback_id
            WHERE f.action = 'reject_all'
            GROUP BY i.batch_id, i.image_id
        )
        SELECT batch_id, image_id,
               feedback_state(c.last_click, c.last_click_ord, r.last_reject_all_ord) AS state
        FROM clicks c FULL OUTER JOIN reject_alls r USING (batch_id, image_id)""",
)

_GENERATION_LOGS = (
    """CREATE VIEW generation_logs AS
        SELECT b.batch_id, b.user_id, b.session_id, b.created_at, b.prompt, b.tier, b.strategy,
               b.recommended, b.confidence, b.count,
               coalesce(d.images_done, 0) AS images_done,
               coalesce(s.images_selected, 0) AS images_selected
        FROM batches b
        LEFT JOIN (SELECT batch_id, count(*) AS images_done FROM images
                   WHERE status = 'done' GROUP BY batch_id) d USING (batch_id)
        LEFT JOIN (SELECT batch_id, count(*) AS images_selected FROM image_current_state
                   WHERE state = 'selected' GROUP BY batch_id) s USING (batch_id)""",
)

# When the retention policy removed an image's file to keep disk use under its budget (NULL: the
# file is kept). A fact about the file only: the image's row, its feedback and the aggregates stay.
_PRUNED_AT = ("ALTER TABLE images ADD COLUMN pruned_at TIMESTAMP",)

# A user's reset of what was learnt for one keyword (NULL: everything, the '*' totals included),
# and its undo. Facts like feedback: `reset_id` takes its number from fact_seq, so the rebuild
# orders it among the clicks and finishes (the rule: learning.store.counting_write_path).
_RESETS = (
    """CREATE TABLE resets (
        reset_id BIGINT PRIMARY KEY DEFAULT nextval('fact_seq'),
        user_id VARCHAR NOT NULL,
        keyword VARCHAR,
        review_seq BIGINT NOT NULL,
        created_at TIMESTAMP NOT NULL
    )""",
    """CREATE TABLE reset_undos (
        reset_id BIGINT PRIMARY KEY,
        user_id VARCHAR NOT NULL,
        review_seq BIGINT NOT NULL,
        undone_at TIMESTAMP NOT NULL
    )""",
    # The resets that still count: the rebuild's and the write path's only view of them.
    """CREATE VIEW active_resets AS
        SELECT reset_id, user_id, keyword FROM resets
        WHERE reset_id NOT IN (SELECT reset_id FROM reset_undos)""",
)

# What the monitoring panel and the snapshots show besides generation_logs (learning.store.monitoring_sql):
# one row per image with its batch's context and current selection, the feedback and the resets.
_MONITORING_VIEWS = (
    """CREATE VIEW image_logs AS
        SELECT i.image_id, i.batch_id, i.user_id, b.session_id, b.prompt, b.keywords, b.tier,
               b.strategy, b.recommended, b.confidence, b.policy, i.checkpoint,
               list_transform(i.loras, lambda l: l.name) AS loras, i.seed, i.status, i.server, i.seconds,
               coalesce(s.state, 'none') AS state, coalesce(s.state, 'none') = 'selected' AS selected,
               i.created_at, i.finished_at, i.pruned_at IS NOT NULL AS pruned
        FROM images i JOIN batches b USING (batch_id)
        LEFT JOIN image_current_state s USING (batch_id, image_id)""",
    """CREATE VIEW feedback_logs AS
        SELECT f.feedback_id, f.user_id, b.session_id, f.batch_id, f.image_id, f.action, f.created_at
        FROM feedback f JOIN batches b USING (batch_id)""",
    """CREATE VIEW reset_logs AS
        SELECT r.reset_id, r.user_id, r.keyword, r.review_seq, r.created_at, u.undone_at
        FROM resets r LEFT JOIN reset_undos u USING (reset_id)""",
)

# Who shares their preferences with the crowd (learning.store.sharing): one fact per change of mind,
# the latest per user in force; nobody shares until they say so.
_PREFERENCE_SHARING = (
    "CREATE SEQUENCE sharing_seq START 1",
    """CREATE TABLE preference_sharing (
        choice_id BIGINT NOT NULL DEFAULT nextval('sharing_seq'),
        user_id VARCHAR NOT NULL,
        share BOOLEAN NOT NULL,
        created_at TIMESTAMP NOT NULL
    )""",
)

# Learning beyond checkpoints (learning.arms): the aggregate tables take the new arm kinds (DuckDB
# cannot alter a CHECK, so each is rebuilt with its rows), a batch says whether the user set its
# CFG (then it is never learnt against), and the user's rules are facts: a LoRA vetoed for a
# keyword, a negative term dismissed from the suggestions (learning.store.rules; the latest per
# (user, kind, keyword, subject) in force).
_NEW_ARM_KINDS_CHECK = "CHECK (arm_kind IN ('checkpoint', 'lora', 'lora-combination', 'cfg', 'negative-term'))"
_OLD_ARM_KINDS_CHECK = "CHECK (arm_kind IN ('checkpoint', 'lora'))"


def _with_new_arm_kinds(table: str, columns: str, extra: str = "", indexes: tuple[str, ...] = ()) -> tuple[str, ...]:
    return (
        f"CREATE TABLE {table}_v7 ({columns.replace(_OLD_ARM_KINDS_CHECK, _NEW_ARM_KINDS_CHECK)}{extra})",
        f"INSERT INTO {table}_v7 SELECT * FROM {table}",
        *(f"DROP INDEX {index}" for index in indexes),
        f"DROP TABLE {table}",
        f"ALTER TABLE {table}_v7 RENAME TO {table}",
    )


# The version that counts the new arm kinds: a file migrated across it rebuilds its aggregates once
# on open, so the history counts for them too (PreferenceStore.open).
ARMS_BEYOND_CHECKPOINTS = 7
_LEARNING_BEYOND_CHECKPOINTS = (
    *_with_new_arm_kinds("preference_stats", _AGGREGATE_COLUMNS,
                         ",\n        PRIMARY KEY (user_id, keyword, arm_kind, arm)\n    ",
                         ("preference_stats_keyword_idx",)),
    "CREATE INDEX preference_stats_keyword_idx ON preference_stats (keyword)",
    *_with_new_arm_kinds("preference_stats_pending", _AGGREGATE_COLUMNS,
                         indexes=("preference_stats_pending_keyword_idx",)),
    "CREATE INDEX preference_stats_pending_keyword_idx ON preference_stats_pending (keyword)",
    *_with_new_arm_kinds("imported_stats", "\n        import_id BIGINT NOT NULL," + _EVIDENCE_COLUMNS
                         + ",\n        imported_at TIMESTAMP NOT NULL"),
    "ALTER TABLE batches ADD COLUMN cfg_explicit BOOLEAN DEFAULT false",
    "CREATE SEQUENCE rule_seq START 1",
    """CREATE TABLE preference_rules (
        rule_id BIGINT NOT NULL DEFAULT nextval('rule_seq'),
        user_id VARCHAR NOT NULL,
        kind VARCHAR NOT NULL CHECK (kind IN ('lora-veto', 'negative-dismissal')),
        keyword VARCHAR NOT NULL,
        subject VARCHAR NOT NULL,
        active BOOLEAN NOT NULL,
        created_at TIMESTAMP NOT NULL
    )""",
)

def sql_list(values: tuple[str, ...]) -> str:
    """Actions as an SQL IN list (they are constants of the rules, never user input)."""
    return ", ".join(f"'{v}'" for v in values)


def click_marks_sql(only: str = "") -> str:
    """Each image's last click (`last_click`, `last_click_ord`: the selection rule's inputs) and last
    favourite mark (`last_mark`) from the feedback; `only` narrows the feedback read (an SQL
    condition, e.g. one user's rows). The one fold of clicks: image_current_state (v8) and the
    history query (learning.store.history_sql) both read it."""
    return f"""
            SELECT batch_id, image_id,
                   arg_max(action, feedback_id) FILTER (WHERE action IN ({sql_list(STATE_CLICKS)})) AS last_click,
                   max(feedback_id) FILTER (WHERE action IN ({sql_list(STATE_CLICKS)})) AS last_click_ord,
                   arg_max(action, feedback_id) FILTER (WHERE action IN ({sql_list(FAVOURITE_MARKS)})) AS last_mark
            FROM feedback
            WHERE action IN ({sql_list(CLICK_ACTIONS)}){f" AND {only}" if only else ""}
            GROUP BY batch_id, image_id
        """


# Favourites (issue 13): two more feedback actions, facts replayed in order like every other click
# (learning.store.counting_write_path has the rules and FAVOURITE_WEIGHT). The feedback table is
# rebuilt for its wider CHECK (as v7 does); the selection rule learns that a favourite selects, and
# image_current_state says which images are favourites. No rebuild of the aggregates is needed: a
# file migrated across this version has no favourite yet.
_FAVOURITES = (
    """CREATE TABLE feedback_v8 (
        feedback_id BIGINT NOT NULL DEFAULT nextval('fact_seq'),
        user_id VARCHAR NOT NULL,
        batch_id VARCHAR NOT NULL,
        image_id VARCHAR,
        action VARCHAR NOT NULL
            CHECK (action IN ('select', 'unselect', 'reject', 'reject_all', 'viewed',
                              'favourite', 'unfavourite')),
        created_at TIMESTAMP NOT NULL
    )""",
    "INSERT INTO feedback_v8 SELECT * FROM feedback",
    "DROP INDEX feedback_batch_idx",
    "DROP TABLE feedback",
    "ALTER TABLE feedback_v8 RENAME TO feedback",
    "CREATE INDEX feedback_batch_idx ON feedback (batch_id)",
    # The selection rule (see v1) with favourite as a select; Python twin: fold_states.
    """CREATE OR REPLACE MACRO feedback_state(last_click, last_click_ord, last_reject_all_ord) AS
        CASE
            WHEN last_click IN ('select', 'favourite') THEN 'selected'
            WHEN last_click = 'reject' THEN 'rejected'
            WHEN last_reject_all_ord > coalesce(last_click_ord, -1) THEN 'rejected'
            ELSE 'none'
        END""",
    # The favourite rule: the last of an image's favourite/unfavourite/unselect/reject is a
    # favourite. Python twin: counting_write_path.fold_favourites (FAVOURITE_MARKS).
    """CREATE MACRO favourite_state(last_mark) AS coalesce(last_mark = 'favourite', false)""",
    f"""CREATE OR REPLACE VIEW image_current_state AS
        WITH clicks AS ({click_marks_sql()}),
        reject_alls AS (
            SELECT i.batch_id, i.image_id, max(f.feedback_id) AS last_reject_all_ord
            FROM feedback f JOIN images i
              ON i.batch_id = f.batch_id AND i.finished_seq < f.feedback_id
            WHERE f.action = 'reject_all'
            GROUP BY i.batch_id, i.image_id
        )
        SELECT batch_id, image_id,
               feedback_state(c.last_click, c.last_click_ord, r.last_reject_all_ord) AS state,
               favourite_state(c.last_mark) AS favourite
        FROM clicks c FULL OUTER JOIN reject_alls r USING (batch_id, image_id)""",
)


# Retry of failed images (issue 13): each ComfyUI prompt of a batch as it was sent (the prompt text
# with trigger words and quality tags, the negative, the LoRA chain with any accelerator, which
# batch indexes of the seed's batch it made), and which prompt made each image — and, for an image
# made again, the failed one it replaces. Facts, written with the batch (learning.store.batch_jobs).
_JOBS = (
    """CREATE TABLE batch_jobs (
        job_id VARCHAR PRIMARY KEY,
        batch_id VARCHAR NOT NULL,
        positive VARCHAR NOT NULL,
        negative VARCHAR NOT NULL,
        loras STRUCT(name VARCHAR, strength DOUBLE)[] NOT NULL,
        batch_size INTEGER NOT NULL,
        first_index INTEGER NOT NULL
    )""",
    "CREATE INDEX batch_jobs_batch_idx ON batch_jobs (batch_id)",
    """CREATE TABLE job_images (
        image_id VARCHAR PRIMARY KEY,
        job_id VARCHAR NOT NULL,
        retry_of VARCHAR
    )""",
)


# Each image's place in its user's history (issue 13, learning.store.history_sql): 1 for the user's
# first image stored, n for the n-th, no gaps (images are never deleted); within one stored batch in
# image_id order. Newest first is then history_seq descending, and the unfiltered page k is a range
# of it, read without sorting the user's images. Filled at insert (fact_writes.insert_batch); an
# older file gets it here, in the order the history showed before: created_at, then image_id.
_HISTORY_SEQ = (
    "ALTER TABLE images ADD COLUMN history_seq BIGINT",
    """UPDATE images SET history_seq = ranked.n
       FROM (SELECT image_id, row_number() OVER (PARTITION BY user_id ORDER BY created_at, image_id) AS n
             FROM images) ranked
       WHERE images.image_id = ranked.image_id""",
)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "facts, aggregates and the selection rule", _FACTS_AND_AGGREGATES),
    Migration(2, "generation_logs view", _GENERATION_LOGS),
    Migration(3, "images.pruned_at (image retention)", _PRUNED_AT),
    Migration(4, "resets and their undos", _RESETS),
    Migration(5, "monitoring views: image_logs, feedback_logs, reset_logs", _MONITORING_VIEWS),
    Migration(6, "preference_sharing (cross-user priors)", _PREFERENCE_SHARING),
    Migration(ARMS_BEYOND_CHECKPOINTS, "LoRA combinations, CFG and negative terms as arms; vetoes and dismissals",
              _LEARNING_BEYOND_CHECKPOINTS),
    Migration(8, "favourites: feedback actions favourite/unfavourite, image_current_state.favourite",
              _FAVOURITES),
    Migration(9, "batch_jobs and job_images: each prompt as sent, so failed images can be made again", _JOBS),
    Migration(10, "images.history_seq: each image's place in its user's history (the history's page order)",
              _HISTORY_SEQ),
)

LATEST_VERSION = MIGRATIONS[-1].version


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    """The version the file is at (0 for a new file)."""
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_version'"
    ).fetchone()
    if not exists or exists[0] == 0:
        return 0
    row = con.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def migrate(con: duckdb.DuckDBPyConnection, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Apply every migration newer than the file, one transaction each; return the final version."""
    con.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER, applied_at TIMESTAMP)")
    current = schema_version(con)
    newest = migrations[-1].version if migrations else 0
    if current > newest:
        raise SchemaTooNewError(
            f"the database is at schema version {current}, newer than this DraftGrid "
            f"({newest})"
        )
    for step in migrations:
        if step.version <= current:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            for statement in step.statements:
                con.execute(statement)
            con.execute("INSERT INTO schema_version VALUES (?, ?)", [step.version, utc_now()])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            log.error("migration to schema v%d (%s) failed; file stays at v%d",
                      step.version, step.description, current)
            raise
        log.info("migrated preference store to schema v%d: %s", step.version, step.description)
        current = step.version
    return current


def require_latest(con: duckdb.DuckDBPyConnection) -> int:
    """For read-only opens, which cannot migrate: the file must be at exactly this version."""
    version = schema_version(con)
    if version > LATEST_VERSION:
        raise SchemaTooNewError(
            f"the database is at schema version {version}, newer than this DraftGrid "
            f"({LATEST_VERSION})"
        )
    if version < LATEST_VERSION:
        raise StoreError(
            f"the database is at schema version {version}; open it once read-write to migrate "
            f"it to {LATEST_VERSION}"
        )
    return version
