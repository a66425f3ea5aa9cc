"""Preference-store speed at scale: rebuild, arm_stats lookups, recording reviews and images, 8 writers.

Builds a DuckDB file with `--rows` feedback facts (default 10 million; 40 per batch of 20
images, 5,000 keywords, 12 checkpoints, 50 LoRAs) straight in SQL, then measures through the
public PreferenceStore API, next to two baselines measured in the same run: the same evidence
computed by scanning the raw facts, and read from the aggregate tables in SQL (no in-memory
copy). Prints the peak RSS of the process. Run: python -m bench.bench_store [--rows N] [--dir DIR]
"""

from __future__ import annotations

import argparse
import logging
import random
import resource
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import duckdb

from bench.synthetic_sql import random_loras_sql
from learning.models import BatchRecord, ImageRecord, ImageStatus
from learning.store.schema import migrate
from learning.store.preference_store import COMPACT_EVERY_WRITES, DUCKDB_CONFIG, DUCKDB_MEMORY_LIMIT, PreferenceStore

KEYWORDS, CHECKPOINTS, LORAS = 5000, 12, 50
IMAGES_PER_BATCH, FEEDBACK_PER_BATCH = 20, 40
ORDS_PER_BATCH = IMAGES_PER_BATCH + FEEDBACK_PER_BATCH
USER = "bench"

_BULK_FACTS = f"""
INSERT INTO batches (batch_id, user_id, session_id, prompt, negative_prompt, keywords, tier, family,
                     explore_mode, auto_lora, strategy, recommended, confidence, count, policy,
                     parent_batch_id, created_at, reviewed_at)
SELECT 'b' || b, '{USER}', 's' || (b // 10), 'bench prompt ' || b, '',
       list_distinct(list_transform(range(6), lambda j: 'kw' || (hash(b * 7 + j) % {KEYWORDS}))),
       'draft', 'sd15', true, true, 'explore', 'ck0', (hash(b) % 100) / 100.0, {IMAGES_PER_BATCH},
       'adaptive', NULL, TIMESTAMP '2025-01-01' + to_seconds(b), TIMESTAMP '2025-01-01' + to_seconds(b)
FROM range($batches) t(b);

INSERT INTO images
SELECT 'b' || b || '-' || i, 'b' || b, '{USER}', 'ck' || (hash(b, i) % {CHECKPOINTS}),
       {random_loras_sql(LORAS)},
       hash(b, i) % 1000000, i, 512, 512, 8, 5.0, 'euler', 'normal', 1.0, NULL, NULL, 'done',
       'gpu0', NULL, NULL, 1.0, TIMESTAMP '2025-01-01' + to_seconds(b),
       TIMESTAMP '2025-01-01' + to_seconds(b), b * {ORDS_PER_BATCH} + i + 1, NULL
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

    @property
    def p50(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def p95(self) -> float:
        ordered = sorted(self.samples_ms)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]

    def line(self) -> str:
        return (f"{self.name}: p50 {self.p50:.3f} ms, p95 {self.p95:.3f} ms, "
                f"max {max(self.samples_ms):.1f} ms ({len(self.samples_ms)} samples)")


def _timed(name: str, fn: Callable[[], object], repeat: int) -> Timing:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return Timing(name, samples)


def _peak_rss() -> str:
    """The process's peak resident set so far (ru_maxrss is in KiB on Linux)."""
    return f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2:.2f} GiB"


def build_facts(path: Path, feedback_rows: int) -> int:
    """Create the file with bulk facts (as if recorded over years); return the batch count."""
    batches = max(1, feedback_rows // FEEDBACK_PER_BATCH)
    con = duckdb.connect(str(path), config=DUCKDB_CONFIG)
    try:
        migrate(con)
        for statement in _BULK_FACTS.split(";"):
            if statement.strip():
                con.execute(statement, {"batches": batches})
        # Move the fact sequence past the generated ords, so new facts order after them.
        con.execute("SELECT max(nextval('fact_seq')) FROM range(?)",
                    [batches * ORDS_PER_BATCH]).fetchall()  # unfetched, it may not run at all
    finally:
        con.close()
    return batches


def _new_batch(store: PreferenceStore, batch_id: str, rng: random.Random, status: str = "done") -> list[str]:
    keywords = tuple(dict.fromkeys(f"kw{rng.randrange(KEYWORDS)}" for _ in range(6)))
    batch = BatchRecord(batch_id, USER, "live", "live prompt", "", keywords, "draft", "sd15",
                        True, True, "explore", "ck0", 0.5, IMAGES_PER_BATCH)
    images = [
        ImageRecord(f"{batch_id}-{i}", batch_id, USER, f"ck{rng.randrange(CHECKPOINTS)}",
                    ((f"lora{rng.randrange(LORAS)}", 0.6),) if i % 2 else (), i, i, 512, 512,
                    8, 5.0, "euler", "normal", status=status)
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


def _check_lookup_answers(store: PreferenceStore, keywords: list[str]) -> None:
    """The in-memory answer equals the SQL aggregates and, in plain counts, the raw facts."""
    memory = store.arm_stats(USER, "checkpoint", keywords)
    sql = store.sql_aggregates().arm_stats(USER, "checkpoint", keywords)
    assert memory.keys() == sql.keys(), "in-memory copy and SQL disagree on rows"
    for key, stat in memory.items():
        assert abs(stat.shown - sql[key].shown) <= 1e-9 * max(1.0, stat.shown), key
    plain = store.keyword_table(USER, "checkpoint")
    plain = plain[plain["keyword"].isin(keywords)]
    expected = {(r.keyword, r.arm): (r.total, r.selected) for r in plain.itertuples()}
    assert _facts_scan_baseline(store, keywords) == expected, "aggregates disagree with facts"


def _measure_lookups(store: PreferenceStore, rng: random.Random, samples: int,
                     scans: int) -> list[str]:
    checkpoints = [f"ck{n}" for n in range(CHECKPOINTS)]
    prompts = [[f"kw{rng.randrange(KEYWORDS)}" for _ in range(6)] for _ in range(samples)]
    _check_lookup_answers(store, prompts[0])
    sql = store.sql_aggregates()
    memory_prompts, sql_prompts = iter(prompts), iter(prompts)
    lookup = _timed("arm_stats, 6 keywords x 12 checkpoints (in-memory copy)",
                    lambda: store.arm_stats(USER, "checkpoint", next(memory_prompts),
                                            checkpoints), samples)
    in_sql = _timed("baseline: same read from the aggregate tables in SQL",
                    lambda: sql.arm_stats(USER, "checkpoint", next(sql_prompts), checkpoints),
                    samples)
    scan_prompts = iter(prompts)
    scan = _timed("baseline: same evidence by scanning the raw facts",
                  lambda: _facts_scan_baseline(store, next(scan_prompts)), scans)
    return [
        lookup.line(), in_sql.line(), scan.line(),
        f"in-memory arm_stats vs SQL aggregates: {in_sql.p50 / lookup.p50:.0f}x (p50), "
        f"{in_sql.p95 / lookup.p95:.0f}x (p95) faster",
        f"in-memory arm_stats vs raw-facts scan: {scan.p50 / lookup.p50:,.0f}x (p50) faster",
    ]


def _measure_reviews(store: PreferenceStore, rng: random.Random, samples: int) -> list[str]:
    fresh = [_new_batch(store, f"live{n}", rng) for n in range(samples)]
    reviews = iter(enumerate(fresh))

    def review() -> None:
        n, ids = next(reviews)
        store.apply_feedback(USER, f"live{n}", "select", [ids[0], ids[5]])

    timing = _timed("apply_feedback reviewing 20 images x 6 keywords", review, samples)
    clicks = iter(enumerate(fresh))

    def click() -> None:
        n, ids = next(clicks)
        store.apply_feedback(USER, f"live{n}", "select", [ids[1]])

    return [timing.line(),
            _timed("apply_feedback, one more click on a reviewed batch", click, samples).line()]


def _measure_bookkeeping(store: PreferenceStore, rng: random.Random, samples: int) -> list[str]:
    """What the writer spends per new 20-image batch and per finished ComfyUI job (4 images of a
    batch just started, as in the app), next to the baseline of one write per image."""
    new_batch, grouped, baseline = [], [], []
    for n in range(samples):
        start = time.perf_counter()
        ids = _new_batch(store, f"job{n}", rng, status="queued")
        new_batch.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        store.update_images([ImageStatus(i, "done", "gpu0", f"/x/{i}.png", seconds=1.0) for i in ids[:4]])
        grouped.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        for i in ids[4:8]:
            store.update_images([ImageStatus(i, "done", "gpu0", f"/x/{i}.png", seconds=1.0)])
        baseline.append((time.perf_counter() - start) * 1000)
    one, each = Timing("a finished job's 4 images, one write", grouped), \
        Timing("baseline: 4 images, one write each", baseline)
    return [Timing("add_batch, 20 images", new_batch).line(), one.line(), each.line(),
            f"one write per job vs one per image: {each.p50 / one.p50:.1f}x (p50) faster"]


def _measure_compaction(store: PreferenceStore, rng: random.Random) -> str:
    """Fold the pending rows of 50 fresh reviews (fewer than one automatic round) at once."""
    for n in range(50):
        ids = _new_batch(store, f"fold{n}", rng)
        store.apply_feedback(USER, f"fold{n}", "select", [ids[0]])
    start = time.perf_counter()
    folded = store.compact_aggregates()
    return (f"compaction (on the writer, every {COMPACT_EVERY_WRITES} writes): {folded:,} pending "
            f"rows folded in {(time.perf_counter() - start) * 1000:.0f} ms")


def _race(store: PreferenceStore, rng: random.Random) -> list[str]:
    racing = [_new_batch(store, f"race{n}", rng) for n in range(8 * 25)]
    reviews_before = store.total_reviews(USER)
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda n: store.apply_feedback(USER, f"race{n}", "select",
                                                     [racing[n][n % 20]]), range(200)))
    elapsed = time.perf_counter() - start
    lost = reviews_before + 200 - store.total_reviews(USER)
    start = time.perf_counter()
    equal = store.aggregates_equal_rebuild()
    return [f"8 threads x 25 reviews: {200 / elapsed:.0f} reviews/s, lost reviews {lost}",
            f"aggregates equal rebuild (and the in-memory copy equals them): {equal} "
            f"(check {time.perf_counter() - start:.1f} s)"]


def run(feedback_rows: int, workdir: Path, samples: int, scans: int) -> Iterator[str]:
    """Build, measure, and yield the report lines as they come."""
    started = time.perf_counter()
    rng = random.Random(7)
    path = workdir / "bench_store.duckdb"
    yield (f"facts: {feedback_rows:,} feedback rows requested; DuckDB memory_limit "
           f"{DUCKDB_MEMORY_LIMIT}")
    start = time.perf_counter()
    batches = build_facts(path, feedback_rows)
    yield (f"bulk facts ({batches:,} batches, {batches * IMAGES_PER_BATCH:,} images, "
           f"{batches * FEEDBACK_PER_BATCH:,} feedback rows): "
           f"{time.perf_counter() - start:.1f} s, {_peak_rss()}")
    with PreferenceStore.open(path) as store:
        start = time.perf_counter()
        store.rebuild_aggregates()
        rows = int(store.read_sql("SELECT count(*) AS n FROM preference_stats")["n"].iloc[0])
        yield (f"rebuild_aggregates (incl. reloading the in-memory copy): "
               f"{time.perf_counter() - start:.1f} s ({rows:,} rows), {_peak_rss()}")
    start = time.perf_counter()
    with PreferenceStore.open(path) as store:
        yield f"open (loads the in-memory copy): {time.perf_counter() - start:.2f} s"
        yield from _measure_lookups(store, rng, samples, scans)
        yield from _measure_reviews(store, rng, samples)
        yield from _measure_bookkeeping(store, rng, samples)
        yield _measure_compaction(store, rng)
        yield from _race(store, rng)
    yield f"total {time.perf_counter() - started:.0f} s, {_peak_rss()}"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000, help="feedback rows to build")
    parser.add_argument("--samples", type=int, default=200, help="timed calls per measurement")
    parser.add_argument("--scans", type=int, default=5,
                        help="timed raw-facts scans (each takes seconds at 10M rows)")
    parser.add_argument("--dir", type=Path, default=None, help="where to build the DB file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench-store-") as tmp:
        for line in run(args.rows, Path(tmp), args.samples, args.scans):
            print(line, flush=True)


if __name__ == "__main__":
    main()
