"""Builders shared by the preference-store tests (no tests here)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from learning.models import BatchRecord, ImageRecord
from learning.store import PreferenceStore


def make_batch(
    batch_id: str,
    *,
    user_id: str = "alice",
    session_id: str = "s1",
    keywords: Sequence[str] = ("cat", "portrait"),
    confidence: float = 0.2,
    strategy: str = "explore",
    count: int = 4,
) -> BatchRecord:
    return BatchRecord(
        batch_id=batch_id, user_id=user_id, session_id=session_id, prompt=" ".join(keywords),
        negative_prompt="blurry", keywords=tuple(keywords), tier="draft", family="sd15",
        explore_mode=True, auto_lora=True, strategy=strategy, recommended="ckA",
        confidence=confidence, count=count,
    )


def make_image(
    batch: BatchRecord,
    index: int,
    *,
    checkpoint: str = "ckA",
    loras: tuple[tuple[str, float], ...] = (),
    status: str = "done",
    parent_image_id: str | None = None,
) -> ImageRecord:
    return ImageRecord(
        image_id=f"{batch.batch_id}-{index}", batch_id=batch.batch_id, user_id=batch.user_id,
        checkpoint=checkpoint, loras=loras, seed=1000 + index, batch_index=index, width=512,
        height=512, steps=8, cfg=5.0, sampler_name="euler", scheduler="normal", status=status,
        parent_image_id=parent_image_id,
    )


def add_simple_batch(
    store: PreferenceStore,
    batch_id: str,
    checkpoints: Sequence[str],
    *,
    statuses: Sequence[str] | None = None,
    loras: tuple[tuple[str, float], ...] = (),
    **batch_fields: object,
) -> list[str]:
    """A batch with one image per checkpoint given; returns the image ids in grid order."""
    batch = make_batch(batch_id, count=len(checkpoints), **batch_fields)  # type: ignore[arg-type]
    images = [
        make_image(batch, i, checkpoint=ck, loras=loras,
                   status=statuses[i] if statuses else "done")
        for i, ck in enumerate(checkpoints)
    ]
    store.add_batch(batch, images)
    return [image.image_id for image in images]


def counts(store: PreferenceStore, user_id: str | None, keyword: str, arm: str,
           kind: str = "checkpoint") -> tuple[int, int, int]:
    """Plain (shown, selected, rejected) of one aggregate row, (0, 0, 0) when absent."""
    query = """SELECT sum(shown), sum(selected), sum(rejected) FROM preference_stats_now(1.0)
               WHERE keyword = ? AND arm = ? AND arm_kind = ? AND (? IS NULL OR user_id = ?)"""
    row = store.read_sql(query, [keyword, arm, kind, user_id, user_id]).iloc[0]
    return (0, 0, 0) if row.isna().any() else (int(row.iloc[0]), int(row.iloc[1]), int(row.iloc[2]))


def table_rows(store: PreferenceStore, table: str) -> int:
    return int(store.read_sql(f"SELECT count(*) AS n FROM {table}")["n"].iloc[0])


@pytest.fixture
def store() -> Iterator[PreferenceStore]:
    opened = PreferenceStore.open(":memory:")
    yield opened
    opened.close()


@pytest.fixture
def file_store(tmp_path: Path) -> Iterator[PreferenceStore]:
    opened = PreferenceStore.open(tmp_path / "prefs.duckdb")
    yield opened
    opened.close()
