"""Reads of the facts (batches, images, selection state), turned into the boundary types."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Sequence

import duckdb
import pandas

from learning.store.counting_write_path import FeedbackFact, ImageFacts, fold_favourites, fold_states, image_facts
from learning.models import BatchRecord, ImageRecord

_BATCH_COLUMNS = """batch_id, user_id, session_id, prompt, negative_prompt, keywords, tier, family,
       explore_mode, auto_lora, strategy, recommended, confidence, count, policy,
       parent_batch_id, created_at, reviewed_at, cfg_explicit"""
_IMAGE_COLUMNS = """image_id, batch_id, user_id, checkpoint, loras, seed, batch_index, width, height, steps,
       cfg, sampler_name, scheduler, status, server, path, error, seconds, parent_image_id,
       denoise, hires_scale, pruned_at"""
_BATCH_SELECT = f"SELECT {_BATCH_COLUMNS} FROM batches"
_IMAGE_SELECT = f"SELECT {_IMAGE_COLUMNS} FROM images"


@dataclass(frozen=True)
class BatchFacts:
    """Everything the counting rules need about one batch, images in grid order."""

    batch_id: str
    user_id: str
    keywords: tuple[str, ...]
    reviewed: bool
    images: tuple[ImageFacts, ...]
    feedback: tuple[FeedbackFact, ...]

    def states(self, extra: Sequence[FeedbackFact] = ()) -> dict[str, str]:
        """Each image's selection state, optionally after feedback not stored yet."""
        return fold_states(self.images, (*self.feedback, *extra))

    def favourites(self, extra: Sequence[FeedbackFact] = ()) -> frozenset[str]:
        """The images that are favourites, optionally after feedback not stored yet."""
        return fold_favourites((*self.feedback, *extra))

    def with_feedback(self, new: Sequence[FeedbackFact], reviewed: bool) -> "BatchFacts":
        """The batch after appending feedback rows."""
        return replace(self, feedback=(*self.feedback, *new), reviewed=reviewed)

    def with_finished(self, image_id: str, finished_seq: int) -> "BatchFacts":
        """The batch after one of its images finished at `finished_seq`."""
        return replace(self, images=tuple(
            replace(image, finished_seq=finished_seq) if image.image_id == image_id else image
            for image in self.images))


@dataclass(frozen=True)
class BatchSnapshot:
    """A batch, its images in grid order and its rule facts, read together (one round trip)."""

    batch: BatchRecord
    images: tuple[ImageRecord, ...]
    facts: BatchFacts


def load_batch_snapshot(cur: duckdb.DuckDBPyConnection, batch_id: str) -> BatchSnapshot | None:
    """The batch with its images and feedback in one query, or None when it is unknown: a view of
    a running batch is rebuilt each time an image finishes, so this is a hot read."""
    row = _first_row(cur.execute(
        f"""SELECT {_BATCH_COLUMNS},
                   (SELECT list(({_IMAGE_COLUMNS}, finished_seq) ORDER BY batch_index, image_id)
                    FROM images WHERE batch_id = $batch_id),
                   (SELECT list((feedback_id, image_id, action) ORDER BY feedback_id)
                    FROM feedback WHERE batch_id = $batch_id)
            FROM batches WHERE batch_id = $batch_id""",
        {"batch_id": batch_id},
    ))
    if row is None:
        return None
    batch = _batch(row[:-2])
    image_rows, feedback = row[-2] or (), row[-1] or ()
    images = tuple(_image(i[:-1]) for i in image_rows)
    facts = BatchFacts(
        batch_id=batch_id,
        user_id=batch.user_id,
        keywords=batch.keywords,
        reviewed=batch.reviewed_at is not None,
        images=tuple(image_facts(batch, image, i[-1]) for image, i in zip(images, image_rows)),
        feedback=tuple(FeedbackFact(*f) for f in feedback),
    )
    return BatchSnapshot(batch, images, facts)


def load_batch_facts(cur: duckdb.DuckDBPyConnection, batch_id: str) -> BatchFacts | None:
    """The batch's rule-relevant facts, or None when it is unknown."""
    snapshot = load_batch_snapshot(cur, batch_id)
    return snapshot.facts if snapshot else None


def get_batch(
    cur: duckdb.DuckDBPyConnection, batch_id: str, user_id: str | None
) -> BatchRecord | None:
    """The batch, or None when missing or another user's (`user_id` None: anyone's)."""
    row = _first_row(cur.execute(
        _BATCH_SELECT + " WHERE batch_id = $batch_id AND ($user_id IS NULL OR user_id = $user_id)",
        {"batch_id": batch_id, "user_id": user_id},
    ))
    return _batch(row) if row else None


def recent_batches(cur: duckdb.DuckDBPyConnection, user_id: str, limit: int) -> list[BatchRecord]:
    """The user's newest batches first."""
    rows = cur.execute(
        _BATCH_SELECT + " WHERE user_id = ? ORDER BY created_at DESC, batch_id DESC LIMIT ?",
        [user_id, limit],
    ).fetchall()
    return [_batch(row) for row in rows]


def get_image(
    cur: duckdb.DuckDBPyConnection, image_id: str, user_id: str | None
) -> ImageRecord | None:
    """The image, or None when missing or another user's (`user_id` None: anyone's)."""
    row = _first_row(cur.execute(
        _IMAGE_SELECT + " WHERE image_id = $image_id AND ($user_id IS NULL OR user_id = $user_id)",
        {"image_id": image_id, "user_id": user_id},
    ))
    return _image(row) if row else None


def lineage(cur: duckdb.DuckDBPyConnection, image_id: str) -> list[ImageRecord]:
    """The refine chain that led to the image: first draft first, the image itself last."""
    rows = cur.execute(
        f"""WITH RECURSIVE chain(image_id, parent_image_id, depth) AS (
                SELECT image_id, parent_image_id, 0 FROM images WHERE image_id = $image_id
                UNION ALL
                SELECT i.image_id, i.parent_image_id, c.depth + 1
                FROM images i JOIN chain c ON i.image_id = c.parent_image_id
                WHERE c.depth < 64
            )
            SELECT img.* FROM chain JOIN ({_IMAGE_SELECT}) img USING (image_id)
            ORDER BY chain.depth DESC""",
        {"image_id": image_id},
    ).fetchall()
    return [_image(row) for row in rows]


def confidence_history(cur: duckdb.DuckDBPyConnection, user_id: str | None) -> pandas.DataFrame:
    """created_at, confidence, strategy, batch_id of every batch, oldest first."""
    return cur.execute(
        """SELECT created_at, confidence, strategy, batch_id FROM batches
           WHERE $user_id IS NULL OR user_id = $user_id
           ORDER BY created_at, batch_id""",
        {"user_id": user_id},
    ).df()


def _first_row(result: duckdb.DuckDBPyConnection) -> tuple[Any, ...] | None:
    """The first row of a query that gives at most one. `fetchall`, not `fetchone`: a result not
    read to its end keeps its transaction open (on a thread's read cursor, until that thread's next
    query; for good if the thread ends), and while it is open DuckDB keeps the undo data of every
    later commit in memory and skips its automatic checkpoints — ~30 KB of RSS per image in the
    soak (docs/RELIABILITY.md)."""
    rows = result.fetchall()
    return rows[0] if rows else None


def _batch(row: Sequence[Any]) -> BatchRecord:
    (batch_id, user_id, session_id, prompt, negative_prompt, keywords, tier, family,
     explore_mode, auto_lora, strategy, recommended, confidence, count, policy,
     parent_batch_id, created_at, reviewed_at, cfg_explicit) = row
    return BatchRecord(
        batch_id=batch_id, user_id=user_id, session_id=session_id, prompt=prompt,
        negative_prompt=negative_prompt, keywords=tuple(keywords), tier=tier, family=family,
        explore_mode=explore_mode, auto_lora=auto_lora, strategy=strategy,
        recommended=recommended, confidence=confidence, count=count, policy=policy,
        parent_batch_id=parent_batch_id, created_at=created_at, reviewed_at=reviewed_at,
        cfg_explicit=bool(cfg_explicit),
    )


def _image(row: Sequence[Any]) -> ImageRecord:
    (image_id, batch_id, user_id, checkpoint, loras, seed, batch_index, width, height, steps,
     cfg, sampler_name, scheduler, status, server, path, error, seconds, parent_image_id,
     denoise, hires_scale, pruned_at) = row
    return ImageRecord(
        image_id=image_id, batch_id=batch_id, user_id=user_id, checkpoint=checkpoint,
        loras=tuple((lora["name"], lora["strength"]) for lora in loras), seed=seed,
        batch_index=batch_index, width=width, height=height, steps=steps, cfg=cfg,
        sampler_name=sampler_name, scheduler=scheduler, status=status, server=server,
        path=path, error=error, seconds=seconds, parent_image_id=parent_image_id,
        denoise=denoise, hires_scale=hires_scale, pruned_at=pruned_at,
    )
