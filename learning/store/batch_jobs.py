"""The prompts of a batch as they were sent (`batch_jobs`) and which prompt made each image
(`job_images`): written with the batch, read to make failed images again (schema v9)."""

from __future__ import annotations

from collections.abc import Sequence

import duckdb

from learning.models import ImageRecord, JobRecord
from learning.store.fact_reads import _IMAGE_COLUMNS, _image


def insert_jobs(cur: duckdb.DuckDBPyConnection, jobs: Sequence[JobRecord]) -> None:
    """Store the jobs and their images' links (in the batch's transaction): one statement each, as
    the batch's own rows (a row per execution would cost the single writer a round trip each)."""
    if not jobs:
        return
    params: list[object] = []
    for j in jobs:
        params += [j.job_id, j.batch_id, j.positive, j.negative, [{"name": n, "strength": s} for n, s in j.loras],
                   j.batch_size, j.first_index]
    cur.execute("INSERT INTO batch_jobs (job_id, batch_id, positive, negative, loras, batch_size, first_index) "
                "VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * len(jobs)), params)
    links = [[image_id, j.job_id, retry_of] for j in jobs for image_id, retry_of in j.images]
    if links:
        cur.execute("INSERT INTO job_images (image_id, job_id, retry_of) VALUES "
                    + ", ".join(["(?, ?, ?)"] * len(links)), [value for link in links for value in link])


def failed_images(cur: duckdb.DuckDBPyConnection, batch_id: str) -> list[tuple[ImageRecord, JobRecord | None]]:
    """The batch's failed images in grid order, each with the job that was to make it (None for an
    image stored before jobs were recorded)."""
    rows = cur.execute(
        f"""SELECT i.*, j.job_id, j.positive, j.negative, j.loras, j.batch_size, j.first_index,
                   (SELECT list((o.image_id, o.retry_of) ORDER BY oi.batch_index)
                    FROM job_images o JOIN images oi ON oi.image_id = o.image_id WHERE o.job_id = j.job_id)
            FROM (SELECT {_IMAGE_COLUMNS} FROM images WHERE batch_id = $batch_id AND status = 'failed') i
            LEFT JOIN job_images ji ON ji.image_id = i.image_id
            LEFT JOIN batch_jobs j ON j.job_id = ji.job_id
            ORDER BY i.batch_index, i.image_id""",
        {"batch_id": batch_id},
    ).fetchall()
    out: list[tuple[ImageRecord, JobRecord | None]] = []
    for row in rows:
        image = _image(row[:-7])
        job_id, positive, negative, loras, batch_size, first_index, images = row[-7:]
        job = None if job_id is None else JobRecord(
            job_id=job_id, batch_id=batch_id, positive=positive, negative=negative,
            loras=tuple((lora["name"], lora["strength"]) for lora in loras), batch_size=batch_size,
            first_index=first_index, images=tuple((i, r) for i, r in images))
        out.append((image, job))
    return out
