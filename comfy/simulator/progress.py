"""Per-prompt node progress, sent as ComfyUI's `progress_state` messages.

Values keep ComfyUI's types: a started node is 0.0/1.0 (floats), sampler steps are ints
(1/4 ...), and finishing sets value = max (so a node finished without being started, like a
cached output, reports 1/1 as ints).
"""

from __future__ import annotations

from typing import Any


class ProgressRegistry:
    """Progress of every node touched by one prompt, in first-touched order."""

    def __init__(self, prompt_id: str) -> None:
        self.prompt_id = prompt_id
        self.nodes: dict[str, dict[str, Any]] = {}

    def _entry(self, node_id: str) -> dict[str, Any]:
        if node_id not in self.nodes:
            self.nodes[node_id] = {"value": 0, "max": 1, "state": "pending", "node_id": node_id,
                                   "prompt_id": self.prompt_id, "display_node_id": node_id,
                                   "parent_node_id": None, "real_node_id": node_id}
        return self.nodes[node_id]

    def start(self, node_id: str) -> None:
        self._entry(node_id).update(value=0.0, max=1.0, state="running")

    def update(self, node_id: str, value: int, maximum: int) -> None:
        self._entry(node_id).update(value=value, max=maximum, state="running")

    def finish(self, node_id: str) -> None:
        entry = self._entry(node_id)
        entry.update(value=entry["max"], state="finished")

    def message(self) -> dict[str, Any]:
        """The `progress_state` data: a snapshot, so later changes do not leak into it."""
        return {"prompt_id": self.prompt_id, "nodes": {k: dict(v) for k, v in self.nodes.items()}}
