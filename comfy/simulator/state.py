"""The prompt queue and the history, with ComfyUI's ordering rules.

The queue runs the lowest `number` first (`front: true` makes the number negative, so it jumps
ahead); history keeps insertion order, a reused prompt id keeps its old place, and
`max_items` returns the newest entries.
"""

from __future__ import annotations

import asyncio
import bisect
from typing import Any

from comfy.simulator.executor import QueueItem

MAX_HISTORY = 10000


class PromptQueue:
    """Pending prompts plus the one running."""

    def __init__(self) -> None:
        self.pending: list[tuple[float, int, QueueItem]] = []
        self.running: QueueItem | None = None
        self._sequence = 0
        self._changed = asyncio.Event()

    def remaining(self) -> int:
        return len(self.pending) + (self.running is not None)

    def put(self, item: QueueItem) -> None:
        self._sequence += 1
        bisect.insort(self.pending, (item.number, self._sequence, item))  # sequence is unique: items never compared
        self._changed.set()

    async def take(self) -> QueueItem:
        """Wait for the next prompt and mark it running."""
        while not self.pending:
            self._changed.clear()
            await self._changed.wait()
        self.running = self.pending.pop(0)[2]
        return self.running

    def done(self) -> None:
        self.running = None

    def delete(self, prompt_ids: list[str]) -> None:
        self.pending = [entry for entry in self.pending if entry[2].prompt_id not in prompt_ids]

    def clear(self) -> None:
        self.pending.clear()

    def snapshot(self) -> dict[str, list[list[Any]]]:
        """The `GET /queue` body."""
        running = [self.running.as_list()] if self.running else []
        return {"queue_running": running, "queue_pending": [entry[2].as_list() for entry in self.pending]}


class History:
    """Finished prompts by id, oldest first."""

    def __init__(self) -> None:
        self.entries: dict[str, dict[str, Any]] = {}

    def add(self, prompt_id: str, entry: dict[str, Any]) -> None:
        self.entries[prompt_id] = entry
        while len(self.entries) > MAX_HISTORY:
            del self.entries[next(iter(self.entries))]

    def get(self, max_items: int | None = None) -> dict[str, Any]:
        ids = list(self.entries)
        if max_items is not None:
            ids = ids[-max_items:] if max_items > 0 else []
        return {prompt_id: self.entries[prompt_id] for prompt_id in ids}

    def one(self, prompt_id: str) -> dict[str, Any]:
        return {prompt_id: self.entries[prompt_id]} if prompt_id in self.entries else {}

    def delete(self, prompt_ids: list[str]) -> None:
        for prompt_id in prompt_ids:
            self.entries.pop(prompt_id, None)

    def clear(self) -> None:
        self.entries.clear()
