"""`DraftGridService`: the one facade the REST API and the Gradio UI call.

It owns no logic of its own: it wires the parts and hands each call to the one that does it, so
REST and UI validate, plan, record and stream in exactly the same way.

* `Servers` — the servers' health and catalog (draftgrid/servers.py);
* `BatchPlanner` — a request becomes a planned batch (draftgrid/batch_planner.py);
* `BatchRunner` — a planned batch runs on the pool and each image is recorded (batch_runner.py);
* `RetryPlanner` — the failed images of a batch made again as a new batch (retry_planner.py);
* `BatchReader` — views, streams, files and lineage of batches (batch_reader.py);
* `Reviews` — picks and rejections, one transaction per click (reviews.py);
* `PreferenceStats` — what the reviews taught, export and import (stats.py);
* `PreferenceSharing` — the crowd prior's switches: the deployment's and each user's (sharing.py);
* `Retention` — keeps the image files under the disk budget, oldest unselected drafts first
  (retention.py), after each batch;
* `PreferenceResets` — resets of what was learnt and their undos (preference_resets.py);
* `Monitoring` — read-only SQL over the monitoring views and Parquet snapshots (monitoring.py).

Sync methods are thread-safe; the pool runs on the service's private event loop.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from comfy.models import ServerStatus
from comfy.pool import ServerPool
from draftgrid.batch_planner import BatchPlanner
from draftgrid.batch_reader import BatchReader
from draftgrid.batch_runner import BatchRunner, BatchTicket
from draftgrid.batch_state import BatchState
from draftgrid.catalog import Catalog
from draftgrid.image_files import ImageFiles
from draftgrid.monitoring import Monitoring
from draftgrid.preference_resets import PreferenceResets
from draftgrid.retention import Decision, Retention, RetentionPolicy
from draftgrid.retry_planner import RetryPlanner
from draftgrid.reviews import Reviews
from draftgrid.runtime import LoopThread
from draftgrid.schemas import FeedbackRequest, GenerateRequest, MonitoringQueryRequest, ResetRequest
from draftgrid.servers import Servers
from draftgrid.preference_rules import PreferenceRules
from draftgrid.sharing import PreferenceSharing, SharingState
from draftgrid.stats import PreferenceStats, Scope
from draftgrid.views import BatchView
from learning.models import ArmKind, BatchRecord, FeedbackResult, Recommendation, ResetRecord, ResetResult, RuleKind
from learning.pools import PoolConfig
from learning.store.history_sql import HistoryFilter, HistoryPage
from learning.store.preference_store import PreferenceStore, TransferFormat

__all__ = ["BatchTicket", "BatchView", "DraftGridService", "SharingState"]


class DraftGridService:
    """Plans, runs, records and reviews batches for many users at once."""

    def __init__(self, *, store: PreferenceStore, pool: ServerPool, loop_runner: LoopThread,
                 pools: PoolConfig, data_dir: Path, retention: RetentionPolicy, policy: str = "adaptive",
                 max_batch: int = 4, simulated: bool = False, admins: Collection[str] = (),
                 share_preferences: bool = False) -> None:
        files = ImageFiles(data_dir)  # measures the disk the images use, once
        state = BatchState(store)
        self._loop = loop_runner
        self._retention = Retention(retention, store, state, files)
        self._servers = Servers(pool, pools, loop_runner, simulated=simulated)
        self._sharing = PreferenceSharing(store, share_preferences)
        self._planner = BatchPlanner(store, pools, files, self._sharing, policy=policy, max_batch=max_batch)
        self._runner = BatchRunner(store, state, pool, loop_runner, files, after_batch=self._retention.request)
        self._retrier = RetryPlanner(store, state, files)
        self._reader = BatchReader(store, state, files, self._retention.policy.removed_detail)
        self._files = files
        self._reviews = Reviews(store, state, self._reader)
        self._stats = PreferenceStats(store)
        self._resets = PreferenceResets(store)
        self._rules = PreferenceRules(store)
        self._monitoring = Monitoring(store, admins)
        self.thumbnails_dir = files.thumbs_dir  # Gradio serves gallery files from here only

    # ------------------------------------------------------------------ servers
    @property
    def simulated(self) -> bool:
        return self._servers.simulated

    def refresh_catalog(self) -> Catalog:
        return self._servers.refresh_catalog()

    def samplers(self) -> list[str]:
        """The samplers the servers offer, if their catalog was read already (no request)."""
        catalog = self._servers.catalog_if_read()
        return list(catalog.samplers) if catalog else []

    def model_families(self) -> list[str]:
        """The model families the servers have a checkpoint of, best-represented first (no request
        when the catalog was read already)."""
        catalog = self._servers.catalog_if_read() or self._servers.catalog()
        return catalog.families()

    def gpus(self) -> list[ServerStatus]:
        return self._servers.statuses()

    def gpus_json(self) -> list[dict[str, object]]:
        return self._servers.statuses_json()

    def loras_json(self) -> list[dict[str, object]]:
        return self._servers.loras_json()

    # ------------------------------------------------------------------ generate
    def generate(self, user_id: str, req: GenerateRequest) -> BatchTicket:
        """Validate, plan, record and start a batch; returns at once while images render."""
        catalog = self._servers.require_online()
        with self._retention.protecting(req.parent_image_ids):  # a refine's parents keep their files
            return self._runner.start(self._planner.plan(user_id, req, catalog))

    def retry_failed(self, user_id: str, batch_id: str) -> BatchTicket:
        """Make the failed images of an ended batch again, with their seeds and settings, as a new
        batch (the ticket's `batch_id`); 404 for another user's batch, 422 when nothing failed or it
        still runs."""
        self._servers.require_online()
        return self._runner.start(self._retrier.plan(user_id, batch_id))

    def recommendation(self, user_id: str, prompt: str, family: str, tier: str, negative_prompt: str = "") -> Recommendation:
        """What the next batch for this prompt would be (no side effects)."""
        return self._planner.recommendation(user_id, prompt, family, tier, self._servers.require_online(),
                                            negative_prompt)

    def cancel(self, user_id: str, batch_id: str) -> None:
        self._reader.view(user_id, batch_id)  # 404 unless it is this user's
        self._runner.cancel(batch_id)

    def recover_interrupted(self) -> int:
        return self._runner.recover_interrupted()

    def stop(self, timeout: float = 10.0) -> None:
        """App shutdown (before the store closes): no more retention passes, running batches
        ended, the server pool closed."""
        self._retention.close()
        self._runner.stop(timeout)

    # ------------------------------------------------------------------ image retention
    def request_pruning(self) -> None:
        """Let the retention policy look at the disk soon (on the runner's loop; it also does after
        every batch)."""
        self._loop.loop.call_soon_threadsafe(self._retention.request)

    def prune_images(self) -> Decision:
        """One retention pass now, on this thread (for tests; the app prunes by itself after batches)."""
        return self._retention.prune()

    def image_disk(self) -> dict[str, int]:
        """Bytes the images use, the budget, and images pruned by this process."""
        return {"used_bytes": self._files.used_bytes(), "max_bytes": self._retention.policy.max_bytes,
                "pruned": self._retention.pruned_count}

    # ------------------------------------------------------------------ read
    def batch_view(self, user_id: str, batch_id: str) -> BatchView:
        return self._reader.view(user_id, batch_id)

    def current_batch_view(self, user_id: str, batch_id: str) -> BatchView | None:
        """`batch_view` if it needs no database read (a current cached view), else None — cheap
        enough for an event loop."""
        return self._reader.current_view(user_id, batch_id)

    def stream(self, user_id: str, batch_id: str, timeout: float = 600.0) -> Iterator[BatchView]:
        return self._reader.stream(user_id, batch_id, timeout)

    def gallery_of(self, view: BatchView) -> list[tuple[str, str]]:
        return self._reader.gallery_of(view)

    def lora_reasons(self, view: BatchView) -> dict[str, str]:
        """Why each LoRA of a batch the caller may see was chosen (its tag, the keyword and the LoRA's
        file name, trigger word or tag it matched, or earlier picks), by LoRA file."""
        names = list(dict.fromkeys(name for image in view.images for name, _ in image.record.loras))
        catalog = self._servers.catalog_if_read() or self._servers.catalog()
        return self._planner.lora_reasons(view.batch, names, catalog)

    def image_png(self, user_id: str, image_id: str) -> bytes:
        return self._reader.image_png(user_id, image_id)

    def thumbnail_png(self, user_id: str, image_id: str) -> bytes:
        return self._reader.thumbnail_png(user_id, image_id)

    def check_image(self, user_id: str, image_id: str) -> None:
        """NotFound / Gone as `image_png` would raise, without reading the file."""
        self._reader.check_image(user_id, image_id)

    def lineage(self, user_id: str, image_id: str) -> list[dict[str, object]]:
        return self._reader.lineage(user_id, image_id)

    def recent_batches(self, user_id: str, limit: int = 30) -> list[BatchRecord]:
        return self._stats.recent_batches(user_id, limit)

    def history(self, user_id: str, query: HistoryFilter) -> HistoryPage:
        """One page of the user's earlier images matching `query`, newest first, with the total."""
        return self._stats.history(user_id, query)

    # ------------------------------------------------------------------ feedback
    def feedback(self, user_id: str, req: FeedbackRequest) -> FeedbackResult:
        return self._reviews.feedback(user_id, req)

    def favourite(self, user_id: str, image_id: str, on: bool) -> FeedbackResult:
        """Favourite (`on`) or unfavourite one of the user's done images: one transaction."""
        return self._reviews.favourite(user_id, image_id, on)

    def toggle(self, user_id: str, batch_id: str, index: int) -> FeedbackResult | None:
        return self._reviews.toggle(user_id, batch_id, index)

    # ------------------------------------------------------------------ stats
    def arm_totals(self, user_id: str, kind: ArmKind, scope: Scope = "user") -> dict[str, dict]:
        return self._stats.arm_totals(user_id, kind, scope)

    def keyword_table(self, user_id: str, scope: Scope = "user", keyword: str | None = None) -> pd.DataFrame:
        return self._stats.keyword_table(user_id, scope, keyword)

    def keyword_stats(self, user_id: str, scope: Scope = "user", keyword: str | None = None) -> list[dict]:
        return self._stats.keyword_stats(user_id, scope, keyword)

    def confidence_history(self, user_id: str, scope: Scope = "user") -> pd.DataFrame:
        return self._stats.confidence_history(user_id, scope)

    def export_preferences(self, user_id: str, fmt: TransferFormat) -> bytes:
        return self._stats.export_preferences(user_id, fmt)

    def import_preferences(self, user_id: str, data: bytes, fmt: TransferFormat) -> int:
        return self._stats.import_preferences(user_id, data, fmt)

    # ------------------------------------------------------------------ resets and monitoring
    def reset_preferences(self, user_id: str, req: ResetRequest) -> ResetResult:
        return self._resets.reset(user_id, req)

    def undo_reset(self, user_id: str, reset_id: str) -> ResetResult:
        return self._resets.undo(user_id, reset_id)

    def resets(self, user_id: str) -> list[ResetRecord]:
        return self._resets.resets(user_id)

    def monitoring_query(self, user_id: str, req: MonitoringQueryRequest) -> dict[str, Any]:
        return self._monitoring.query(user_id, req)

    def monitoring_snapshot(self, user_id: str) -> bytes:
        return self._monitoring.snapshot(user_id)
    # ------------------------------------------------------------------ rules: LoRA vetoes, dismissed negatives
    def rules(self, user_id: str, kind: RuleKind) -> list[dict[str, str]]:
        return self._rules.rules(user_id, kind)

    def set_rule(self, user_id: str, kind: RuleKind, keyword: str, subject: str, active: bool) -> list[dict[str, str]]:
        return self._rules.set_rule(user_id, kind, keyword, subject, active)

    def replace_rules(self, user_id: str, kind: RuleKind, wanted: list[tuple[str, str]]) -> list[dict[str, str]]:
        return self._rules.replace_rules(user_id, kind, wanted)

    # ------------------------------------------------------------------ sharing with the crowd
    def sharing(self, user_id: str) -> SharingState:
        return self._sharing.state(user_id)

    def set_sharing(self, user_id: str, share: bool) -> SharingState:
        return self._sharing.set(user_id, share)
