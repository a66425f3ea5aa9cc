"""History query speed: p95 of `PreferenceStore.history` over 100,000 images of one user.

Builds a DuckDB file straight in SQL (INSERT ... SELECT from range): `--images` images (default
100,000) of one user in batches of 20 (5,000 batches), 40 checkpoints, 200 LoRAs, 2,000 keywords,
three tiers, a select on most batches, a favourite on some of those and a Reject-all on some, plus other users' images the
query must skip. Then times a mix of filters and pages through the public store API, next to the
baseline measured in the same run: the unfiltered first page. Prints p50/p95 and the ratio of each
p95 to the baseline's. Target: every p95 <= 50 ms.
Run: python -m bench.bench_history [--images N] [--samples N] [--dir DIR]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Iterator, Sequence

import duckdb

from bench.synthetic_sql import random_loras_sql
from learning.store.history_sql import MAX_LIMIT, HistoryFilter
from learning.store.preference_store import PreferenceStore

IMAGES_PER_BATCH, CHECKPOINTS, LORAS, KEYWORDS = 20, 40, 200, 2000
OTHER_USERS_SHARE = 0.2  # other users' images, as a share of the bench user's
USER = "bench"
START = datetime(2025, 1, 1)
TARGET_P95_MS = 50.0

# who batch `b` belongs to: the bench user, else one of 50 others
_OWNER = f"CASE WHEN b < $batches THEN '{USER}' ELSE 'other' || (b % 50) END"
_BULK = f"""
INSERT INTO batches (batch_id, user_id, session_id, prompt, negative_prompt, keywords, tier, family,
                     explore_mode, auto_lora, strategy, recommended, confidence, count, policy,
                     parent_batch_id, created_at, reviewed_at)
SELECT 'b' || b, {_OWNER}, 's' || (b // 10),
       'a photo of kw' || (hash(b, 1) % {KEYWORDS}) || ' and kw' || (hash(b, 2) % {KEYWORDS}) || ', bench ' || b,
       '', ['kw' || (hash(b, 1) % {KEYWORDS}), 'kw' || (hash(b, 2) % {KEYWORDS})],
       ['draft', 'standard', 'quality'][(1 + hash(b, 3) % 3)::BIGINT], 'sd15', true, true, 'explore', 'ck0', 0.5,
       {IMAGES_PER_BATCH}, 'adaptive', NULL, TIMESTAMP '2025-01-01' + to_seconds(b * 60), NULL
FROM range($all_batches) t(b);

INSERT INTO images (image_id, batch_id, user_id, checkpoint, loras, seed, batch_index, width, height,
                    steps, cfg, sampler_name, scheduler, denoise, hires_scale, parent_image_id, status,
                    server, path, error, seconds, created_at, finished_at, finished_seq, history_seq)
SELECT 'b' || b || '-' || i, 'b' || b, {_OWNER},
       'ck' || (hash(b, i) % {CHECKPOINTS}),
       {random_loras_sql(LORAS)},
       hash(b, i) % 1000000, i, 512, 512, 8, 5.0, 'euler', 'normal', 1.0, NULL, NULL,
       CASE WHEN hash(b, i, 4) % 50 = 0 THEN 'failed' ELSE 'done' END, 'gpu0', NULL, NULL, 1.0,
       TIMESTAMP '2025-01-01' + to_seconds(b * 60), TIMESTAMP '2025-01-01' + to_seconds(b * 60 + 30),
       nextval('fact_seq'), row_number() OVER (PARTITION BY {_OWNER} ORDER BY b, i)
FROM range($all_batches) t(b), range({IMAGES_PER_BATCH}) s(i)
ORDER BY b, i;

INSERT INTO feedback (user_id, batch_id, image_id, action, created_at)
SELECT {_OWNER}, 'b' || b,
       CASE WHEN k <> 1 THEN 'b' || b || '-' || (hash(b, 5) % {IMAGES_PER_BATCH}) END,
       ['select', 'reject_all', 'favourite'][k + 1],
       TIMESTAMP '2025-01-01' + to_seconds(b * 60 + 50)
FROM range($all_batches) t(b), range(3) s(k)
WHERE (k <> 1 AND hash(b, 6) % 4 > 0 AND (k = 0 OR hash(b, 8) % 10 = 0)) OR (k = 1 AND hash(b, 7) % 3 = 0)
ORDER BY b, k;

UPDATE batches SET reviewed_at = created_at + INTERVAL 50 SECOND
WHERE batch_id IN (SELECT DISTINCT batch_id FROM feedback);
"""


def build(path: Path, images: int) -> int:
    """Fill a new store file at `path`; returns the bench user's image count."""
    batches = max(1, images // IMAGES_PER_BATCH)
    store = PreferenceStore.open(path)
    store.close()


    con = duckdb.connect(str(path))
    try:
        for statement in filter(str.strip, _BULK.split(";")):
            con.execute(statement, {"batches": batches,
                                    "all_batches": batches + int(batches * OTHER_USERS_SHARE)}
                        if "$" in statement else None)
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return batches * IMAGES_PER_BATCH


def mix(images: int) -> list[tuple[str, HistoryFilter]]:
    """The timed queries: what a history screen asks for, first pages and deep ones."""
    span = timedelta(seconds=images // IMAGES_PER_BATCH * 60)
    return [
        ("unfiltered, page 1 (baseline)", HistoryFilter(limit=50)),
        ("unfiltered, page 1 of 200", HistoryFilter(limit=MAX_LIMIT)),
        ("unfiltered, deep page (offset 50,000)", HistoryFilter(limit=50, offset=images // 2)),
        ("prompt substring", HistoryFilter(prompt="KW17 and")),
        ("keyword", HistoryFilter(keyword="kw42")),
        ("checkpoint", HistoryFilter(checkpoint="ck7")),
        ("checkpoint, page 20", HistoryFilter(checkpoint="ck7", offset=1000)),
        ("LoRA", HistoryFilter(lora="lora13")),
        ("tier", HistoryFilter(tier="quality")),
        ("selected", HistoryFilter(selected=True)),
        ("selected, page 10", HistoryFilter(selected=True, offset=500)),
        ("favourites", HistoryFilter(favourite=True)),
        ("date range (a tenth)", HistoryFilter(since=START + span * 0.4, until=START + span * 0.5)),
        ("checkpoint + LoRA + not selected", HistoryFilter(checkpoint="ck3", lora="lora5", selected=False)),
        ("keyword + tier + dates", HistoryFilter(keyword="kw9", tier="draft", since=START + span * 0.2)),
    ]


def p95(values: Sequence[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) > 1 else values[0]


def run(images: int, directory: Path, samples: int) -> Iterator[str]:
    path = directory / "history.duckdb"
    started = time.perf_counter()
    mine = build(path, images)
    yield f"built {mine:,} images of one user (+{int(mine * OTHER_USERS_SHARE):,} of others) in " \
          f"{time.perf_counter() - started:.1f} s"
    store = PreferenceStore.open(path)
    try:
        results = []
        for label, query in mix(mine):
            store.history(USER, query)  # warm
            times = []
            for _ in range(samples):
                t0 = time.perf_counter()
                page = store.history(USER, query)
                times.append((time.perf_counter() - t0) * 1000)
            results.append((label, statistics.median(times), p95(times), page.total))
        baseline = results[0][2]
        yield f"{'query':42} {'total':>7} {'p50 ms':>8} {'p95 ms':>8} {'p95/base':>9}"
        for label, p50, p95_ms, total in results:
            yield f"{label:42} {total:>7,} {p50:8.1f} {p95_ms:8.1f} {p95_ms / baseline:8.2f}x"
        worst = max(r[2] for r in results)
        yield f"worst p95 {worst:.1f} ms: {'within' if worst <= TARGET_P95_MS else 'OVER'} the {TARGET_P95_MS:.0f} ms target"
    finally:
        store.close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=100_000, help="images of the bench user")
    parser.add_argument("--samples", type=int, default=60, help="timed calls per query")
    parser.add_argument("--dir", type=Path, default=None, help="where to build the DB file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench-history-") as tmp:
        for line in run(args.images, Path(tmp), args.samples):
            print(line, flush=True)


if __name__ == "__main__":
    main()
