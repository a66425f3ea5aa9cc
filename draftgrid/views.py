"""How a batch looks to the API and the UI: image and batch views, status, captions, and a cache.

Polling clients (and the UI's stream) ask for the same batch many times a second; a view is
rebuilt only when what it shows changed — an image running, finished or failed (the live board's
`images_version`), a review (the feedback generation) or a retention pass that removed images —
so reads cost a dictionary lookup instead of a query. Sampler progress and previews are attached
fresh to the cached view.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from draftgrid.live import LiveBatch
from learning.models import BatchRecord, ImageRecord
from learning.store.fact_reads import BatchSnapshot


@dataclass(frozen=True)
class ImageView:
    """One image of a batch as the API and UI show it."""

    record: ImageRecord
    status: str
    state: str  # "selected" | "rejected" | "none"
    favourite: bool = False  # a favourite is always selected too (issue 13)

    @property
    def pruned(self) -> bool:
        """Its file was removed by the retention policy (the row, settings and seed stay)."""
        return self.record.pruned_at is not None

    def as_json(self) -> dict[str, object]:
        r = self.record
        return {
            "image_id": r.image_id, "status": self.status,
            "url": f"/api/images/{r.image_id}" if self.status == "done" and not self.pruned else None,
            "checkpoint": r.checkpoint, "loras": [{"name": n, "strength": s} for n, s in r.loras],
            "seed": r.seed, "batch_index": r.batch_index, "server": r.server,
            "selected": self.state == "selected", "rejected": self.state == "rejected", "error": r.error,
            "width": r.width, "height": r.height, "steps": r.steps, "cfg": r.cfg,
            "sampler_name": r.sampler_name, "scheduler": r.scheduler, "parent_image_id": r.parent_image_id,
            "pruned": self.pruned, "favourite": self.favourite,
        }


@dataclass(frozen=True)
class BatchView:
    """A batch with its images, in gallery order (finished first, in order of completion)."""

    batch: BatchRecord
    status: str
    images: tuple[ImageView, ...]
    live: LiveBatch | None
    # the encoded JSON, made once; `replace(view, live=...)` passes this same dict on, so the
    # progress-attached copies of a cached view share it (the JSON holds no progress)
    _encoded: dict[str, bytes] = field(default_factory=dict, compare=False, repr=False)

    def json_bytes(self) -> bytes:
        """`as_json()` encoded: a cached view answers many polls, each with the same bytes."""
        encoded = self._encoded.get("json")
        if encoded is None:
            encoded = self._encoded["json"] = json.dumps(self.as_json(), separators=(",", ":")).encode()
        return encoded

    def as_json(self) -> dict[str, object]:
        b = self.batch
        return {
            "batch_id": b.batch_id, "status": self.status, "prompt": b.prompt, "tier": b.tier,
            "model_family": b.family, "total_count": b.count, "parent_batch_id": b.parent_batch_id,
            "strategy": {"mode": b.strategy, "recommended": b.recommended, "confidence": b.confidence},
            "done_count": sum(1 for i in self.images if i.status == "done"),
            "images": [i.as_json() for i in self.images],
        }


def batch_status(statuses: list[str], finished: bool) -> str:
    """queued / running / done / partial / failed, from the image statuses (pure)."""
    if statuses and all(s == "queued" for s in statuses) and not finished:
        return "queued"
    if any(s in ("queued", "running") for s in statuses) and not finished:
        return "running"
    done = sum(1 for s in statuses if s == "done")
    if done == len(statuses):
        return "done"
    return "partial" if done else "failed"


def short_checkpoint(name: str) -> str:
    """A model file's short name for captions and the strategy line: no folder, no extension, and
    cut before the first "_" when a name of 4 or more characters stays ("juggernautXL_v9" →
    "juggernautXL"); the full name is in the viewer."""
    stem = name.rsplit("/", 1)[-1].removesuffix(".safetensors")
    head = stem.split("_", 1)[0]
    return head if len(head) >= 4 else stem


def short_names(text: str, checkpoints: list[str]) -> str:
    """`text` with each of the checkpoints' full file names written short (longest first, so a name
    inside another is not cut)."""
    for name in sorted({n for n in checkpoints if n}, key=len, reverse=True):
        text = text.replace(name, short_checkpoint(name))
    return text


def caption(view: ImageView) -> str:
    """Gallery caption: selection mark first, then the short checkpoint name, how many LoRAs and
    the seed with the batch index (the viewer has the rest)."""
    r = view.record
    mark = {"selected": "✓ selected · ", "rejected": "✗ rejected · "}.get(view.state, "")
    loras = f" + {len(r.loras)} LoRA" if r.loras else ""
    return f"{mark}{'♥ ' if view.favourite else ''}{short_checkpoint(r.checkpoint)}{loras} · seed {r.seed}#{r.batch_index}"


ViewKey = tuple[int, int, int]
SnapshotStamp = tuple[int, int, int, int]


class ViewCache:
    """The last view of each recently read batch, keyed by what would make it stale, and the store
    read it was built from, kept while nothing the store holds of the batch can have changed."""

    def __init__(self, capacity: int = 512) -> None:
        self._views: OrderedDict[str, tuple[ViewKey, BatchView]] = OrderedDict()
        self._snapshots: OrderedDict[str, tuple[SnapshotStamp, BatchSnapshot]] = OrderedDict()
        self._generation: dict[str, int] = {}
        self._removals = 0  # retention passes that removed images (of any batch)
        self._lock = threading.Lock()
        self._capacity = capacity

    def reviewed(self, batch_id: str) -> None:
        """Call after a feedback write: the selection changed, so cached views are stale."""
        with self._lock:
            self._generation[batch_id] = self._generation.get(batch_id, 0) + 1

    def images_removed(self) -> None:
        """Call after the retention policy marked images pruned: every cached view may show one as
        present. (Once per pass, not per batch: no per-batch entry for batches nobody reads.)"""
        with self._lock:
            self._removals += 1

    def peek(self, batch_id: str) -> BatchView | None:
        """The last view built, however stale: enough for what never changes (owner, image ids)."""
        with self._lock:
            hit = self._views.get(batch_id)
        return hit[1] if hit else None

    def snapshot(self, batch_id: str, live: LiveBatch | None,
                 read: Callable[[], BatchSnapshot | None]) -> BatchSnapshot | None:
        """The store read for a view built on the board read `live`: the last one while the board
        shows the same ended images and no review or retention pass wrote since (a job that starts
        sampling changes the view, not the store), else `read()`. Only running batches' reads are
        kept (an ended one's view no longer changes without a read; no unknown id's), so the memory
        is bounded by what runs."""
        if live is None or live.finished:
            with self._lock:
                self._snapshots.pop(batch_id, None)
            return read()
        with self._lock:  # taken before the read, as in `get`: a write during it makes the next one read
            # both board lists only grow, so their lengths change whenever what has ended does
            stamp = (len(live.order), len(live.failed), self._generation.get(batch_id, 0), self._removals)
            kept = self._snapshots.get(batch_id)
        if kept is not None and kept[0] == stamp:
            return kept[1]
        snapshot = read()
        if snapshot is not None:
            with self._lock:
                self._snapshots[batch_id] = (stamp, snapshot)
                self._snapshots.move_to_end(batch_id)
                while len(self._snapshots) > self._capacity:
                    self._snapshots.popitem(last=False)
        return snapshot

    def _key(self, batch_id: str, live: LiveBatch | None) -> ViewKey:
        return (live.images_version if live else -1, self._generation.get(batch_id, 0), self._removals)

    def current(self, batch_id: str, live: LiveBatch | None) -> BatchView | None:
        """The cached view if nothing it shows changed since, with `live`'s progress; else None.
        Never builds: cheap enough to call on an event loop."""
        with self._lock:
            key = self._key(batch_id, live)
            hit = self._views.get(batch_id)
        if hit is None or hit[0] != key:
            return None
        return hit[1] if hit[1].live is live else replace(hit[1], live=live)

    def get(self, batch_id: str, live: LiveBatch | None, build: Callable[[], BatchView]) -> BatchView:
        """The cached view if nothing it shows changed since, with `live`'s progress; else `build()`."""
        cached = self.current(batch_id, live)
        if cached is not None:
            return cached
        with self._lock:  # taken before the build: a change during it makes the next read rebuild
            key = self._key(batch_id, live)
        view = build()
        with self._lock:
            self._views[batch_id] = (key, view)
            self._views.move_to_end(batch_id)
            while len(self._views) > self._capacity:
                dropped, _ = self._views.popitem(last=False)
                self._generation.pop(dropped, None)  # a kept read stamped with it goes too:
                self._snapshots.pop(dropped, None)  # a count that restarts must not match it again
        return view
