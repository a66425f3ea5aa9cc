"""Builders and readers shared by the preference-store tests (not a test module: pytest does not
collect it). The `store` fixture is in conftest.py."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Protocol

import pytest

from learning.arms import ARM_KINDS
from learning.models import ArmKind, ArmStat, BatchRecord, ImageRecord
from learning.store.preference_store import PreferenceStore


def make_batch(
    batch_id: str,
    *,
    user_id: str = "alice",
    session_id: str = "s1",
    keywords: Sequence[str] = ("cat", "portrait"),
    confidence: float = 0.2,
    strategy: str = "explore",
    count: int = 4,
    family: str = "sd15",
    negative_prompt: str = "blurry",
    cfg_explicit: bool = False,
) -> BatchRecord:
    return BatchRecord(
        batch_id=batch_id, user_id=user_id, session_id=session_id, prompt=" ".join(keywords),
        negative_prompt=negative_prompt, keywords=tuple(keywords), tier="draft", family=family,
        explore_mode=True, auto_lora=True, strategy=strategy, recommended="ckA",
        confidence=confidence, count=count, cfg_explicit=cfg_explicit,
    )


def make_image(
    batch: BatchRecord,
    index: int,
    *,
    checkpoint: str = "ckA",
    loras: tuple[tuple[str, float], ...] = (),
    status: str = "done",
    parent_image_id: str | None = None,
    cfg: float = 5.0,
) -> ImageRecord:
    return ImageRecord(
        image_id=f"{batch.batch_id}-{index}", batch_id=batch.batch_id, user_id=batch.user_id,
        checkpoint=checkpoint, loras=loras, seed=1000 + index, batch_index=index, width=512,
        height=512, steps=8, cfg=cfg, sampler_name="euler", scheduler="normal", status=status,
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


def select_then_move_on(store: PreferenceStore, later_reviews: int) -> list[str]:
    """Review b0 (one ckA image, selected), then `later_reviews` batches of ckB (viewed)."""
    ids = add_simple_batch(store, "b0", ["ckA"])
    store.apply_feedback("alice", "b0", "select", ids)
    for n in range(1, later_reviews + 1):
        add_simple_batch(store, f"b{n}", ["ckB"])
        store.apply_feedback("alice", f"b{n}", "viewed")
    return ids


def counts(store: PreferenceStore, user_id: str | None, keyword: str, arm: str,
           kind: str = "checkpoint") -> tuple[int, int, int]:
    """Plain (shown, selected, rejected) of one aggregate row, (0, 0, 0) when absent."""
    query = """SELECT sum(shown), sum(selected), sum(rejected) FROM preference_stats_now(1.0)
               WHERE keyword = ? AND arm = ? AND arm_kind = ? AND (? IS NULL OR user_id = ?)"""
    row = store.read_sql(query, [keyword, arm, kind, user_id, user_id]).iloc[0]
    return (0, 0, 0) if row.isna().any() else (int(row.iloc[0]), int(row.iloc[1]), int(row.iloc[2]))


class EvidenceReads(Protocol):
    """What the store answers from memory and `store.sql_aggregates()` answers in SQL."""

    def arm_stats(self, user_id: str | None, kind: ArmKind, keywords: Sequence[str],
                  arms: Sequence[str] | None = None) -> dict[tuple[str, str], ArmStat]: ...

    def base_rate(self, user_id: str | None, kind: ArmKind) -> ArmStat: ...

    def total_reviews(self, user_id: str | None) -> int: ...

    def arm_totals(self, user_id: str | None, kind: ArmKind) -> dict[str, dict]: ...


def evidence_snapshot(reads: EvidenceReads, users: Sequence[str | None],
                      keywords: Sequence[str], arms: Sequence[str]) -> dict[str, float]:
    """Every evidence read for these users and keywords (all arms, and only `arms`), flattened
    to name → number so that two snapshots compare with pytest.approx."""
    flat: dict[str, float] = {}
    for user in users:
        flat[f"{user} reviews"] = reads.total_reviews(user)
        for kind in ARM_KINDS:
            for label, stats in (("all", reads.arm_stats(user, kind, keywords)),
                                 ("some", reads.arm_stats(user, kind, keywords, arms)),
                                 ("base", {("*", "*"): reads.base_rate(user, kind)})):
                for (keyword, arm), stat in stats.items():
                    for field, value in asdict(stat).items():
                        flat[f"{user} {kind} {label} {keyword} {arm} {field}"] = value
            for arm, totals in reads.arm_totals(user, kind).items():
                for field, value in totals.items():
                    flat[f"{user} {kind} totals {arm} {field}"] = value
    return flat


def assert_memory_equals_sql(store: PreferenceStore, users: Sequence[str | None],
                             keywords: Sequence[str], arms: Sequence[str]) -> None:
    """The in-memory evidence reads answer what the aggregate tables answer in SQL."""
    assert evidence_snapshot(store, users, keywords, arms) == pytest.approx(
        evidence_snapshot(store.sql_aggregates(), users, keywords, arms), rel=1e-9, abs=1e-12)


def table_rows(store: PreferenceStore, table: str) -> int:
    return int(store.read_sql(f"SELECT count(*) AS n FROM {table}")["n"].iloc[0])


def fail_after_aggregate_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every later write fail right after it changed the aggregates, inside its transaction
    (a crash mid-write, say a full disk): nothing of it may stay."""
    from learning.store import fact_writes

    real_add_changes = fact_writes.add_changes

    def add_then_fail(*args: object) -> None:
        real_add_changes(*args)  # type: ignore[arg-type]
        raise RuntimeError("disk full, say")

    monkeypatch.setattr(fact_writes, "add_changes", add_then_fail)
