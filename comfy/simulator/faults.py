"""Switches that make a simulated server misbehave the way real GPU boxes do.

Flipped from Python (`server.faults.hang = True`) or over HTTP (`POST /sim/faults`) so that
out-of-process tests can use them too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

FAULT_NAMES = ("die_after_images", "refuse_connections", "hang", "fail_checkpoints")


@dataclass
class Faults:
    """Current fault state of one simulated server."""

    die_after_images: int | None = None  # after N more images: killed, connections and state gone
    refuse_connections: bool = False  # listener and open connections gone, state kept; False listens again
    hang: bool = False  # accept connections but never answer
    fail_checkpoints: set[str] = field(default_factory=set)  # prompts using them raise at run time
    listener: Callable[[str], None] | None = field(default=None, repr=False, compare=False)

    def __setattr__(self, name: str, value: Any) -> None:
        """Setting a switch tells the server at once, so `faults.hang = True` acts immediately."""
        super().__setattr__(name, value)
        listener = self.__dict__.get("listener")
        if name in FAULT_NAMES and listener is not None:
            listener(name)

    def to_json(self) -> dict[str, Any]:
        """JSON view for `GET /sim/state`."""
        return {name: sorted(value) if isinstance(value, set) else value
                for name in FAULT_NAMES for value in [getattr(self, name)]}

    def update(self, changes: dict[str, Any]) -> None:
        """Apply a partial JSON update (`POST /sim/faults`); unknown keys raise KeyError."""
        for key, value in changes.items():
            if key not in FAULT_NAMES:
                raise KeyError(key)
            setattr(self, key, set(value) if key == "fail_checkpoints" else value)
