"""Write transactions on the facts; each keeps the aggregates in step inside the same transaction.

Every function here runs on the writer thread with an open transaction (see `learning.store.writer`):
it validates first and raises before writing, so a rejected request changes nothing. Batches
are read through `ctx.batches` (the writer's memory of recent batches, else the database), and
every batch a write changes is handed back to it, as the transaction leaves it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Sequence

import duckdb

from learning.store.aggregates_memory import AggregateChanges
from learning.store.aggregates import add_changes, bump_review_seq
from learning.store.counting_write_path import (
    ALL_KEYWORDS,
    BATCH_ACTIONS,
    CLICK_ACTIONS,
    REVIEW_ACTIONS,
    FeedbackFact,
    ResetFact,
    arm_changes,
    contribution,
    contributions,
    counted_from,
    hidden_keywords,
    image_facts,
    reviewed_ord,
)
from learning.models import BatchRecord, FeedbackAction, FeedbackResult, ImageRecord, ImageStatus
from learning.store.recent_batches import BatchChanges
from learning.store.errors import ImageNotDoneError, StoreError, UnknownBatchError, UnknownImageError
from learning.store.fact_reads import BatchFacts
from learning.store.history_sql import history_places

log = logging.getLogger(__name__)

IMAGE_STATUSES = ("queued", "running", "done", "failed")
ENDED_STATUSES = ("done", "failed")  # an image in these has its finished_at

_BATCH_COLUMNS = (
    "batch_id, user_id, session_id, prompt, negative_prompt, keywords, tier, family, "
    "explore_mode, auto_lora, strategy, recommended, confidence, count, policy, "
    "parent_batch_id, created_at, cfg_explicit"
)
_IMAGE_COLUMNS = (
    "image_id", "batch_id", "user_id", "checkpoint", "loras", "seed", "batch_index", "width", "height", "steps",
    "cfg", "sampler_name", "scheduler", "denoise", "hires_scale", "parent_image_id", "status", "server", "path",
    "error", "seconds", "created_at", "finished_at", "history_seq", "finished_seq",
)
# A batch's images as one list per column, unnested side by side: binding 25 lists is cheaper than
# 25 parameters per image, and their types come from the table's columns.
_INSERT_IMAGES = (f"INSERT INTO images ({', '.join(_IMAGE_COLUMNS)}) SELECT "
                  + ", ".join(f"unnest(${name})" for name in _IMAGE_COLUMNS))


@dataclass(frozen=True)
class WriteContext:
    """What every write needs besides its arguments: the time it happens, the decay setting,
    and the collectors of its effects on the in-memory copies (applied only after commit)."""

    now: datetime
    half_life: float
    aggregates: AggregateChanges
    batches: BatchChanges


def insert_batch(
    cur: duckdb.DuckDBPyConnection,
    batch: BatchRecord,
    images: Sequence[ImageRecord],
    ctx: WriteContext,
) -> None:
    """Store a new batch and its images (images already done get their finish order now)."""
    keywords = _clean_keywords(batch.keywords)
    _check_images_belong(batch, images)
    try:
        finished = _insert_batch_rows(cur, batch, keywords, images, ctx)
    except duckdb.ConstraintException as exc:
        raise ValueError(f"batch {batch.batch_id} repeats a stored id: {exc}") from exc
    in_grid_order = sorted(images, key=lambda image: (image.batch_index, image.image_id))
    ctx.batches.put(BatchFacts(
        batch_id=batch.batch_id,
        user_id=batch.user_id,
        keywords=keywords,
        reviewed=False,
        images=tuple(
            image_facts(batch, image, finished[image.image_id])
            for image in in_grid_order
        ),
        feedback=(),
    ))
    log.info("stored batch %s (%d images, keywords %s)", batch.batch_id, len(images), keywords)


def _insert_batch_rows(
    cur: duckdb.DuckDBPyConnection,
    batch: BatchRecord,
    keywords: tuple[str, ...],
    images: Sequence[ImageRecord],
    ctx: WriteContext,
) -> dict[str, int | None]:
    """Insert the rows; return each image's finish order (None while not done)."""
    cur.execute(
        f"INSERT INTO batches ({_BATCH_COLUMNS}) VALUES ({', '.join(['?'] * 18)})",
        [
            batch.batch_id, batch.user_id, batch.session_id, batch.prompt,
            batch.negative_prompt, list(keywords), batch.tier, batch.family, batch.explore_mode,
            batch.auto_lora, batch.strategy, batch.recommended, batch.confidence, batch.count,
            batch.policy, batch.parent_batch_id, batch.created_at or ctx.now, batch.cfg_explicit,
        ],
    )
    if not images:
        return {}
    places = history_places(cur, batch.user_id, [image.image_id for image in images])
    done = [image.status == "done" for image in images]
    seqs = iter(next_fact_seqs(cur, sum(done)))
    finished = {image.image_id: next(seqs) if is_done else None for image, is_done in zip(images, done)}
    derived: dict[str, list[object]] = {  # the columns that are not an ImageRecord field as it is
        "loras": [[{"name": name, "strength": strength} for name, strength in i.loras] for i in images],
        "created_at": [ctx.now] * len(images),
        "finished_at": [ctx.now if i.status in ENDED_STATUSES else None for i in images],
        "history_seq": [places[i.image_id] for i in images],
        "finished_seq": [finished[i.image_id] for i in images],
    }
    columns = {name: derived[name] if name in derived else [getattr(i, name) for i in images]
               for name in _IMAGE_COLUMNS}
    cur.execute(_INSERT_IMAGES, columns)
    return finished


def next_fact_seqs(cur: duckdb.DuckDBPyConnection, n: int) -> list[int]:
    """`n` new numbers of the facts' order (`fact_seq`), ascending; none asked, none drawn."""
    if n == 0:
        return []
    return sorted(seq for (seq,) in cur.execute("SELECT nextval('fact_seq') FROM range($n)", {"n": n}).fetchall())


def set_image_statuses(
    cur: duckdb.DuckDBPyConnection, steps: Sequence[ImageStatus], ctx: WriteContext
) -> None:
    """Move images through their lifecycle in one statement (a finished job's images land
    together); an image finishing after its batch was reviewed counts as shown now (so late
    images count exactly once). Checks every step before writing anything."""
    ids = [step.image_id for step in steps]
    if len(set(ids)) != len(ids):
        raise ValueError("an image appears twice in one status update")
    for step in steps:
        if step.status not in IMAGE_STATUSES:
            raise ValueError(f"image status must be one of {IMAGE_STATUSES}, not {step.status!r}")
    current = {
        row[0]: _StoredStatus(*row[1:])
        for row in cur.execute(
            "SELECT image_id, status, finished_seq, batch_id, server, path, error, seconds, finished_at "
            "FROM images WHERE list_contains($ids, image_id)",
            {"ids": ids},
        ).fetchall()
    }
    for step in steps:
        if step.image_id not in current:
            raise UnknownImageError(step.image_id)
        if current[step.image_id].status == "done" and step.status != "done":
            raise ValueError(f"image {step.image_id} is done; its status cannot change to {step.status!r}")
    first_finish = [step.status == "done" and current[step.image_id].finished_seq is None for step in steps]
    seqs = iter(next_fact_seqs(cur, sum(first_finish)))
    # each column's new value, worked out here from the row as read: a step's None keeps what is stored
    kept = [current[step.image_id] for step in steps]
    finished_seqs = [next(seqs) if first else row.finished_seq for first, row in zip(first_finish, kept)]
    cur.execute(_UPDATE_STATUSES, {
        "ids": ids, "statuses": [step.status for step in steps],
        "servers": [_given(step.server, row.server) for step, row in zip(steps, kept)],
        "paths": [_given(step.path, row.path) for step, row in zip(steps, kept)],
        "errors": [_given(step.error, row.error) for step, row in zip(steps, kept)],
        "seconds": [_given(step.seconds, row.seconds) for step, row in zip(steps, kept)],
        "finished_at": [_given(row.finished_at, ctx.now) if step.status in ENDED_STATUSES else None
                        for step, row in zip(steps, kept)],
        "finished_seqs": finished_seqs,
    })
    for step, first, seq in zip(steps, first_finish, finished_seqs):
        if first:
            _record_finish(cur, current[step.image_id].batch_id, step.image_id, int(seq), ctx)


@dataclass(frozen=True)
class _StoredStatus:
    """An image's lifecycle columns as stored, read before a status update."""

    status: str
    finished_seq: int | None
    batch_id: str
    server: str | None
    path: str | None
    error: str | None
    seconds: float | None
    finished_at: datetime | None


def _given(new: object, stored: object) -> object:
    """A lifecycle step's value, else what is stored (SQL's coalesce)."""
    return stored if new is None else new


# Plain values per row, unnested side by side: no expression is evaluated per updated row, and
# nothing is returned (the update of a finished job's images was the writer's most frequent and,
# with coalesce/CASE/nextval/RETURNING, its costliest statement; `python -m bench.bench_store`).
_UPDATE_STATUSES = """UPDATE images SET status = u.status, server = u.server, path = u.path, error = u.error,
                          seconds = u.seconds, finished_at = u.finished_at, finished_seq = u.finished_seq
    FROM (SELECT unnest($ids::VARCHAR[]) AS image_id, unnest($statuses::VARCHAR[]) AS status,
                 unnest($servers::VARCHAR[]) AS server, unnest($paths::VARCHAR[]) AS path,
                 unnest($errors::VARCHAR[]) AS error, unnest($seconds::DOUBLE[]) AS seconds,
                 unnest($finished_at::TIMESTAMP[]) AS finished_at,
                 unnest($finished_seqs::BIGINT[]) AS finished_seq) u
    WHERE images.image_id = u.image_id"""


def _record_finish(
    cur: duckdb.DuckDBPyConnection, batch_id: str, image_id: str, finished_seq: int,
    ctx: WriteContext,
) -> None:
    """Note the finish in the batch's facts; a just-finished image of an already reviewed
    batch counts as shown now (from now: after every reset, so none hides it)."""
    loaded = ctx.batches.load(cur, batch_id)
    assert loaded is not None, f"image {image_id} names a missing batch {batch_id}"
    facts = loaded.with_finished(image_id, finished_seq)
    ctx.batches.put(facts)
    if not facts.reviewed:
        return
    image = next(i for i in facts.images if i.image_id == image_id)
    after = contribution(True, facts.states()[image_id], image_id in facts.favourites())
    changes = arm_changes(facts.keywords, [image], {image_id: (0, 0, 0)}, {image_id: after})
    add_changes(cur, ctx.aggregates, facts.user_id, ctx.aggregates.review_seq(facts.user_id),
                changes, ctx.now)
    log.info("image %s finished after batch %s was reviewed: counted as shown now",
             image_id, batch_id)


# One step of a review: an action and the images it names (none for reject_all / viewed).
ReviewStep = tuple[FeedbackAction, Sequence[str]]


def record_feedback(
    cur: duckdb.DuckDBPyConnection,
    user_id: str,
    batch_id: str,
    action: FeedbackAction,
    image_ids: Sequence[str],
    ctx: WriteContext,
) -> FeedbackResult:
    """Append one feedback action: a review of one step."""
    return record_review(cur, user_id, batch_id, [(action, image_ids)], ctx)


def record_review(
    cur: duckdb.DuckDBPyConnection,
    user_id: str,
    batch_id: str,
    steps: Sequence[ReviewStep],
    ctx: WriteContext,
) -> FeedbackResult:
    """Append a review's feedback actions, in order, as one write: the first reviewing action
    counts the batch, the rest apply only the transitions they cause (a repeated click changes
    nothing). Every step is checked before anything is written. The aggregates change by the
    net effect of all steps, which equals the sum of their effects applied one by one: before
    the batch is reviewed nothing counts, and after that every change is stamped with the same
    review_seq."""
    planned = [(action, list(dict.fromkeys(ids))) for action, ids in steps]
    if not planned:
        raise ValueError("a review needs at least one step")
    for action, ids in planned:
        _check_action_arguments(action, ids)
    facts = ctx.batches.load(cur, batch_id)
    if facts is None or facts.user_id != user_id:
        raise UnknownBatchError(batch_id)
    known = {image.image_id for image in facts.images}
    for _, ids in planned:
        for image_id in ids:
            if image_id not in known:
                raise UnknownImageError(image_id, batch_id)
    _check_favourites_done(facts, planned)
    new_facts = _insert_feedback(cur, user_id, batch_id, planned, ctx.now)
    before = facts.states()
    favourites_before, favourites_after = facts.favourites(), facts.favourites(new_facts)
    step_changed, after = _states_step_by_step(facts, before, planned, new_facts)
    reviews_now = not facts.reviewed and any(action in REVIEW_ACTIONS for action, _ in planned)
    review_seq = ctx.aggregates.review_seq(user_id)
    if reviews_now:
        cur.execute("UPDATE batches SET reviewed_at = ? WHERE batch_id = ?", [ctx.now, batch_id])
        review_seq = bump_review_seq(cur, ctx.aggregates, user_id)
    reviewed = facts.reviewed or reviews_now
    resets = ctx.aggregates.active_resets(user_id)
    changes = arm_changes(
        facts.keywords,
        facts.images,
        contributions(facts.images, before, facts.reviewed, favourites_before),
        contributions(facts.images, after, reviewed, favourites_after),
        _hidden_by_resets(facts, new_facts, resets) if resets else None,
    )
    add_changes(cur, ctx.aggregates, user_id, review_seq, changes, ctx.now)
    ctx.batches.put(facts.with_feedback(new_facts, reviewed))
    changed = reviews_now or step_changed or favourites_before != favourites_after
    log.info("review of batch %s (%s): %s%s, %d aggregate rows", batch_id,
             ", ".join(f"{action} {len(ids)}" if ids else action for action, ids in planned),
             "reviewed now, " if reviews_now else "", "changed" if changed else "no change",
             len(changes))
    return FeedbackResult(
        batch_id=batch_id,
        selected=frozenset(i for i, s in after.items() if s == "selected"),
        rejected=frozenset(i for i, s in after.items() if s == "rejected"),
        reviewed=reviewed,
        changed=changed,
        favourites=favourites_after,
    )


def _check_favourites_done(facts: BatchFacts, planned: list[tuple[str, list[str]]]) -> None:
    """Only a done image can become a favourite (a queued or failed one shows nothing to like)."""
    finished = {image.image_id: image.finished_seq for image in facts.images}
    for action, ids in planned:
        if action == "favourite":
            for image_id in ids:
                if finished[image_id] is None:
                    raise ImageNotDoneError(image_id)


def _hidden_by_resets(
    facts: BatchFacts, new_facts: list[FeedbackFact], resets: Sequence[ResetFact]
) -> dict[str, frozenset[str]]:
    """Per image, the keywords whose rows an active reset closed to it (it counted before)."""
    review = reviewed_ord((*facts.feedback, *new_facts))
    return {image.image_id: hidden_keywords(counted_from(image, review), facts.keywords, resets)
            for image in facts.images}


def _states_step_by_step(
    facts: BatchFacts,
    before: dict[str, str],
    planned: list[tuple[str, list[str]]],
    new_facts: list[FeedbackFact],
) -> tuple[bool, dict[str, str]]:
    """Whether some step changed some image's state (as `changed` of that step applied alone
    would say), and the states after the last step."""
    states, changed, done = before, False, 0
    for _, ids in planned:
        done += max(1, len(ids))
        after = facts.states(new_facts[:done])
        changed = changed or after != states
        states = after
    return changed, states


def view_batches(
    cur: duckdb.DuckDBPyConnection,
    user_id: str,
    session_id: str,
    except_batch_id: str,
    ctx: WriteContext,
) -> list[str]:
    """The user moved on: review (as `viewed`) every other unreviewed batch of the session
    that has finished generating and has at least one done image, oldest first."""
    batch_ids = [
        row[0]
        for row in cur.execute(
            """SELECT b.batch_id FROM batches b
               WHERE b.user_id = $user_id AND b.session_id = $session_id
                 AND b.batch_id <> $except AND b.reviewed_at IS NULL
                 AND EXISTS (SELECT 1 FROM images i
                             WHERE i.batch_id = b.batch_id AND i.status = 'done')
                 AND NOT EXISTS (SELECT 1 FROM images i WHERE i.batch_id = b.batch_id
                                 AND i.status IN ('queued', 'running'))
               ORDER BY b.created_at, b.batch_id""",
            {"user_id": user_id, "session_id": session_id, "except": except_batch_id},
        ).fetchall()
    ]
    for batch_id in batch_ids:
        record_feedback(cur, user_id, batch_id, "viewed", (), ctx)
    return batch_ids


def _insert_feedback(
    cur: duckdb.DuckDBPyConnection,
    user_id: str,
    batch_id: str,
    steps: list[tuple[str, list[str]]],
    now: datetime,
) -> list[FeedbackFact]:
    """Append the feedback rows of every step (one per image, or one batch-level row) in one
    statement; they take their `fact_seq` numbers in the order given."""
    targets: list[tuple[str | None, str]] = [
        (image_id, action) for action, ids in steps for image_id in (ids or [None])]
    values = ", ".join(["(?, ?, ?, ?, ?)"] * len(targets))
    params: list[object] = []
    for image_id, action in targets:
        params += [user_id, batch_id, image_id, action, now]
    rows = sorted(cur.execute(
        "INSERT INTO feedback (user_id, batch_id, image_id, action, created_at) "
        f"VALUES {values} RETURNING feedback_id, image_id, action",
        params,
    ).fetchall())
    if [(image_id, action) for _, image_id, action in rows] != targets:
        # The rules replay feedback by fact_seq: rows numbered out of order would count a
        # different review than the one asked for (DuckDB numbers VALUES rows in order).
        raise StoreError(f"feedback rows of batch {batch_id} were numbered out of order")
    return [FeedbackFact(int(ord_), image_id, action) for ord_, image_id, action in rows]


def _check_action_arguments(action: str, image_ids: list[str]) -> None:
    if action in CLICK_ACTIONS:
        if not image_ids:
            raise ValueError(f"feedback {action!r} needs at least one image id")
    elif action in BATCH_ACTIONS:
        if image_ids:
            raise ValueError(f"feedback {action!r} applies to the whole batch; got image ids")
    else:
        raise ValueError(f"unknown feedback action {action!r}")


def _clean_keywords(keywords: Sequence[str]) -> tuple[str, ...]:
    """Distinct, non-empty, in order; '*' is reserved for the all-prompts totals."""
    cleaned = tuple(dict.fromkeys(k for k in keywords if k))
    if ALL_KEYWORDS in cleaned:
        raise ValueError(f"{ALL_KEYWORDS!r} is reserved and cannot be a keyword")
    return cleaned


def _check_images_belong(batch: BatchRecord, images: Sequence[ImageRecord]) -> None:
    for image in images:
        if image.batch_id != batch.batch_id or image.user_id != batch.user_id:
            raise ValueError(
                f"image {image.image_id} names batch {image.batch_id!r} / user "
                f"{image.user_id!r}, not {batch.batch_id!r} / {batch.user_id!r}"
            )
        if image.status not in IMAGE_STATUSES:
            raise ValueError(f"image {image.image_id} has unknown status {image.status!r}")
