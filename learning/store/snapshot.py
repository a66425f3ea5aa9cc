"""A snapshot of the facts and the monitoring views as Parquet files in a zip, written while the
app runs: the supported way to study the data with DuckDB or pandas in another process (the
store's file stays locked to this one).

Written from a read cursor in one read transaction, so every file shows the same moment and no
write waits on it. `user_id` None (an admin) takes every user's rows; otherwise the user's own.
"""

from __future__ import annotations

import io
import logging
import tempfile
import zipfile
from pathlib import Path

import duckdb

from learning.store.monitoring_sql import MONITORING_VIEWS, write_parquet

log = logging.getLogger(__name__)

# The fact tables, each with a user_id column (the aggregates are in the `preferences` view).
FACT_TABLES = ("batches", "images", "feedback", "imported_stats", "resets", "reset_undos")


def snapshot_zip(cur: duckdb.DuckDBPyConnection, user_id: str | None, half_life: float) -> bytes:
    """`facts/<table>.parquet` and `views/<view>.parquet` in a zip (stored: Parquet is compressed)."""
    sources = {f"facts/{name}": f"SELECT * FROM {name}" for name in FACT_TABLES}
    sources |= {f"views/{name}": select for name, select in MONITORING_VIEWS.items()}
    buffer = io.BytesIO()
    with tempfile.TemporaryDirectory(prefix="draftgrid-snapshot-") as tmp, \
            zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        cur.execute("BEGIN TRANSACTION")  # one moment for every file
        try:
            for entry, select in sources.items():
                target = Path(tmp) / f"{entry.replace('/', '_')}.parquet"
                write_parquet(cur, select, user_id, half_life, target)
                archive.write(target, f"{entry}.parquet")
        finally:
            cur.execute("COMMIT")
    data = buffer.getvalue()
    log.info("snapshot of %s: %d files, %d bytes", user_id or "every user", len(sources), len(data))
    return data
