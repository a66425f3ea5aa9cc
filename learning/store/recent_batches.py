"""The writer's memory of the batches it wrote lately, so a click does not re-read them.

Loading a batch's facts (its images and feedback) costs ~3 ms of index lookups in DuckDB, more
than the rest of a review write. The writer thread is the only one that changes facts, so it
can keep what it wrote: a write transaction collects the batches it touched in a `BatchChanges`,
which reaches the memory only if the transaction commits. A batch not in memory is loaded from
the database (the transaction's own view), so the memory only ever saves time.

Only the writer thread uses these objects: no locking.
"""

from __future__ import annotations

from collections import OrderedDict

import duckdb

from learning.store.fact_reads import BatchFacts, load_batch_facts

# Batches the users may still click on: their sessions' recent grids (~60 small objects each).
# Older ones are simply read back from the database.
DEFAULT_CAPACITY = 256


class RecentBatches:
    """Least-recently-used committed batch facts, by batch_id."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self._facts: OrderedDict[str, BatchFacts] = OrderedDict()

    def get(self, batch_id: str) -> BatchFacts | None:
        facts = self._facts.get(batch_id)
        if facts is not None:
            self._facts.move_to_end(batch_id)
        return facts

    def changes(self) -> "BatchChanges":
        """A collector for one write transaction."""
        return BatchChanges(self)

    def apply(self, changes: "BatchChanges") -> None:
        """Keep a committed transaction's batches (called on the writer thread after COMMIT)."""
        for batch_id, facts in changes.touched.items():
            self._facts[batch_id] = facts
            self._facts.move_to_end(batch_id)
        while len(self._facts) > self.capacity:
            self._facts.popitem(last=False)

    def clear(self) -> None:
        self._facts.clear()


class BatchChanges:
    """The batches one write transaction touched, as that transaction sees them."""

    def __init__(self, memory: RecentBatches) -> None:
        self._memory = memory
        self.touched: dict[str, BatchFacts] = {}

    def load(self, cur: duckdb.DuckDBPyConnection, batch_id: str) -> BatchFacts | None:
        """The batch's facts: this transaction's, else remembered, else read from `cur`."""
        facts = self.touched.get(batch_id) or self._memory.get(batch_id)
        return facts if facts is not None else load_batch_facts(cur, batch_id)

    def put(self, facts: BatchFacts) -> None:
        """The batch as this transaction leaves it."""
        self.touched[facts.batch_id] = facts
