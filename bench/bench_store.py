"""Preference-store speed at scale: rebuild, arm_stats lookups, recording reviews, 8 writers.

Builds a DuckDB file with `--rows` feedback facts (default 10 million; 40 per batch of 20
images, 5,000 keywords, 12 checkpoints, 50 LoRAs) straight in SQL, then measures through the
public PreferenceStore API. Run: python -m bench.bench_store [--rows N] [--dir DIR]
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import duckdb

from learning.models import BatchRecord, ImageRecord
from learning.schema import migrate
from learning.store import PreferenceStore

KEYWORDS, CHECKPOINTS, LORAS = 5000, 12, 50
IMAGES_PER_BATCH, FEEDBACK_PER_BATCH = 20, 40
ORDS_PER_BATCH = IMAGES_PER_BATCH + FEEDBACK_PER_BATCH
USER = "bench"

_BULK_FACTS = f"""
INSERT INTO batches
SELECT 'b' || b, '{USER}', 's' || (b // 10), 'bench prompt ' || b, '',
       list_distinct(list_transform(range(6), lambda j: 'kw' || (hash(b * 7 + j) % {KEYWORDS}))),
       'draft', 'sd15', true, true, 'explore', 'ck0', (hash(b) % 100) / 100.0, {IMAGES_PER_BATCH},
       'adaptive', NULL, TIMESTAMP '2025-01-01' + to_seconds(b), TIMESTAMP '2025-01-01' + to_seconds(b)
FROM range($batches) t(b);

INSERT INTO images
SELECT 'b' || b || '-' || i, 'b' || b, '{USER}', 'ck' || (hash(b, i) % {CHECKPOINTS}),
       CASE hash(b, i, 1) % 3
           WHEN 0 THEN []
           WHEN 1 THEN [{{'name': 'lora' || (hash(b, i, 2) % {LORAS}), 'strength': 0.6}}]
           ELSE [{{'name': 'lora' || (hash(b, i, 2) % {LORAS}), 'strength': 0.6}},
                 {{'name': 'lora' || (hash(b, i, 3) % {LORAS}), 'strength': 0.7}}]
       END,
       hash(b, i) % 1000000, i, 512, 512, 8, 5.0, 'euler', 'normal', 1.0, NULL, NULL, 'done',
       'gpu0', NULL, NULL, 1.0, TIMESTAMP '2025-01-01' + to_seconds(b),
       TIMESTAMP '2025-01-01' + to_seconds(b), b * {ORDS_PER_BATCH} + i + 1
FROM range($batches) t(b), range({IMAGES_PER_BATCH}) s(i);

INSERT INTO feedback
SELECT b * {ORDS_PER_BATCH} + {IMAGES_PER_BATCH} + k + 1, '{USER}', 'b' || b,
       CASE WHEN action = 'reject_all' THEN NULL
            ELSE 'b' || b || '-' || (CASE WHEN k = 0 THEN 0 ELSE hash(b, k) % {IMAGES_PER_BATCH} END)
       END,
       action, TIMESTAMP '2025-01-01' + to_seconds(b)
FROM (SELECT b, k,
             CASE WHEN k = 0 THEN 'select'
                  WHEN hash(b, k, 9) % 40 = 0 THEN 'reject_all'
                  ELSE ['select', 'unselect', 'reject', 'select'][(1 + hash(b, k, 5) % 4)::BIGINT]
             END AS action
      FROM range($batches) t(b), range({FEEDBACK_PER_BATCH}) s(k));
"""


@dataclass(frozen=True)
class Timing:
    """Latency samples of one operation, in milliseconds."""

    name: str
    samples_ms: list[float]

    def line(self) -> str:
        ordered = sorted(self.samples_ms)
        p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
        return (f"{self.name}: p50 {statistics.median(ordered):.2f} ms, p95 {p95:.2f} ms "
                f"({len(ordered)} samples)")

    @property
    def p50(self) -> float:
        return statistics.median(self.samples_ms)


def _timed(fn: Callable[[], object], repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def build_facts(path: Path, feedback_rows: int) -> int:
    """Create the file with bulk facts (as if recorded over years); return the batch count."""
    batches = max(1, feedback_rows // FEEDBACK_PER_BATCH)
    con = duckdb.connect(str(path))
    try:
        migrate(con)
        for statement in _BULK_FACTS.split(";"):
            if statement.strip():
                con.execute(statement, {"batches": batches})
        # Move the fact sequence past the generated ords, so new facts order after them.
        con.execute("SELECT max(nextval('fact_seq')) FROM range(?)", [batches * ORDS_PER_BATCH])
    finally:
        con.close()
    return batches


def _new_batch(store: PreferenceStore, batch_id: str, rng: random.Random) -> list[str]:
    keywords = tuple(dict.fromkeys(f"kw{rng.randrange(KEYWORDS)}" for _ in range(6)))
    batch = BatchRecord(batch_id, USER, "live", "live prompt", "", keywords, "draft", "sd15",
                        True, True, "explore", "ck0", 0.5, IMAGES_PER_BATCH)
    images = [
        ImageRecord(f"{batch_id}-{i}", batch_id, USER, f"ck{rng.randrange(CHECKPOINTS)}",
                    ((f"lora{rng.randrange(LORAS)}", 0.6),) if i % 2 else (), i, i, 512, 512,
                    8, 5.0, "euler", "normal", status="done")
        for i in range(IMAGES_PER_BATCH)
    ]
    store.add_batch(batch, images)
    return [image.image_id for image in images]


def _facts_scan_baseline(store: PreferenceStore, keywords: Sequence[str]) -> dict:
    """The same evidence (plain counts per keyword × checkpoint) computed from the raw facts."""
    table = store.read_sql(
        """SELECT k.keyword, i.checkpoint AS arm, count(*) AS shown,
                  count(*) FILTER (WHERE s.state = 'selected') AS selected
           FROM (SELECT batch_id, unnest(keywords) AS keyword FROM batches
                 WHERE user_id = $user AND reviewed_at IS NOT NULL) k
           JOIN images i USING (batch_id)
           LEFT JOIN image_current_state s USING (batch_id, image_id)
           WHERE k.keyword = ANY($keywords) AND i.status = 'done'
           GROUP BY ALL""",
        {"user": USER, "keywords": list(keywords)},
    )
    return {(r.keyword, r.arm): (r.shown, r.selected) for r in table.itertuples(index=False)}


def run(feedback_rows: int, workdir: Path, samples: int) -> list[str]:
    """Build, measure, and return the report lines."""
    rng = random.Random(7)
    path = workdir / "bench_store.duckdb"
    lines = [f"facts: {feedback_rows:,} feedback rows requested"]
    start = time.perf_counter()
    batches = build_facts(path, feedback_rows)
    lines.append(f"bulk facts ({batches:,} batches, {batches * IMAGES_PER_BATCH:,} images, "
                 f"{batches * FEEDBACK_PER_BATCH:,} feedback rows): "
                 f"{time.perf_counter() - start:.1f} s")
    store = PreferenceStore.open(path)
    try:
        start = time.perf_counter()
        store.rebuild_aggregates()
        lines.append(f"rebuild_aggregates: {time.perf_counter() - start:.1f} s "
                     f"({len(store.read_sql('SELECT 1 FROM preference_stats')):,} rows)")
        checkpoints = [f"ck{n}" for n in range(CHECKPOINTS)]
        prompts = [[f"kw{rng.randrange(KEYWORDS)}" for _ in range(6)] for _ in range(samples)]
        queue = iter(prompts * 2)
        lookup = Timing("arm_stats, 6 keywords x 12 checkpoints", _timed(
            lambda: store.arm_stats(USER, "checkpoint", next(queue), checkpoints), samples))
        lines.append(lookup.line())
        probe = prompts[0]
        plain = store.keyword_table(USER, "checkpoint")
        plain = plain[plain["keyword"].isin(probe)]
        expected = {(r.keyword, r.arm): (r.total, r.selected) for r in plain.itertuples()}
        assert _facts_scan_baseline(store, probe) == expected, "aggregates disagree with facts"
        baseline = Timing("same evidence by scanning the facts",
                          _timed(lambda: _facts_scan_baseline(store, probe), 10))
        lines.append(baseline.line())
        lines.append(f"aggregate lookup is {baseline.p50 / lookup.p50:.0f}x faster (p50 ratio)")
        fresh = [_new_batch(store, f"live{n}", rng) for n in range(samples)]
        reviews = iter(enumerate(fresh))

        def review() -> None:
            n, ids = next(reviews)
            store.apply_feedback(USER, f"live{n}", "select", [ids[0], ids[5]])

        lines.append(Timing("apply_feedback reviewing 20 images x 6 keywords",
                            _timed(review, samples)).line())
        racing = [_new_batch(store, f"race{n}", rng) for n in range(8 * 25)]
        reviews_before = store.total_reviews(USER)
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda n: store.apply_feedback(USER, f"race{n}", "select",
                                                         [racing[n][n % 20]]), range(200)))
        elapsed = time.perf_counter() - start
        lost = reviews_before + 200 - store.total_reviews(USER)
        equal = store.aggregates_equal_rebuild()
        lines.append(f"8 threads x 25 reviews: {200 / elapsed:.0f} reviews/s, lost reviews {lost},"
                     f" aggregates equal rebuild: {equal}")
    finally:
        store.close()
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000, help="feedback rows to build")
    parser.add_argument("--samples", type=int, default=200, help="timed calls per measurement")
    parser.add_argument("--dir", type=Path, default=None, help="where to build the DB file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench-store-") as tmp:
        for line in run(args.rows, Path(tmp), args.samples):
            print(line, flush=True)


if __name__ == "__main__":
    main()
