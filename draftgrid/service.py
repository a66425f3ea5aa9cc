"""The generation service: one place where a request becomes a stored, running batch.

It ties `learning/` (keywords, preferences, recommendation, Auto-LoRA, pools) to `comfy/` (the
server pool) and owns the image files. The REST API and the Gradio UI both call it, so they
validate, plan, record and stream in exactly the same way. Sync methods are thread-safe; the
pool runs on the service's private event loop.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from comfy.models import ImageResult, JobFailed, JobProgress, LoraSpec, PreviewFrame, ServerStatus
from comfy.pool import ServerPool
from comfy.workflow import defaults_for, size_for
from draftgrid.catalog import Catalog, read_catalog
from draftgrid.errors import InvalidRequest, NoServerOnline, NotFound
from draftgrid.live import LiveBoard
from draftgrid.views import BatchView, ImageView, ViewCache, batch_status, caption
from draftgrid.runtime import LoopThread
from draftgrid.planning import (
    BatchPlan, CheckpointGroup, PlannedImage, RefineParent, RenderSettings, apply_overrides, new_id,
    plan_refine, plan_txt2img,
)
from draftgrid.schemas import ASPECT_RATIOS, MAX_SEED, FeedbackRequest, GenerateRequest
from draftgrid.thumbnails import thumbnail
from learning.keywords import parse_prompt
from learning.lora import apply_triggers, choose_loras, vary_loras
from learning.models import (
    ArmKind, BatchRecord, FeedbackResult, ImageRecord, ImageStatus, LoraChoice, ParsedPrompt, Recommendation,
)
from learning.pools import PoolConfig
from learning.recommend.planner import RecommendRequest, lora_preferences, recommend
from learning.store.preference_store import PreferenceStore, UnknownBatchError, UnknownImageError

log = logging.getLogger(__name__)

NEXT_TIER = {"draft": "standard", "standard": "quality"}
MAX_REFINE_VARIANTS = 8
STEP_INTERVAL = 0.5  # seconds between stream updates that only show sampler progress
REFINE_DENOISE = 0.55  # img2img strength: keeps the draft's composition, redraws the detail
INTERRUPTED = "the app stopped before this image finished"


@dataclass(frozen=True)
class BatchTicket:
    """What `POST /api/generate/batch` answers at once."""

    batch_id: str
    total_count: int
    gpu_distribution: dict[str, int]
    checkpoint_distribution: dict[str, int]
    loras: list[dict[str, object]]
    strategy: dict[str, object]
    keywords: list[str]
    parent_image_ids: list[str]

    def as_json(self) -> dict[str, object]:
        return dict(self.__dict__)


def closest_aspect(width: int, height: int) -> str:
    """The supported aspect ratio nearest to a size (refines keep their parent's shape)."""
    def ratio(label: str) -> float:
        a, b = label.split(":")
        return int(a) / int(b)

    return min(ASPECT_RATIOS, key=lambda label: abs(ratio(label) - width / height))


class DraftGridService:
    """Plans, runs, records and reviews batches for many users at once."""

    def __init__(self, *, store: PreferenceStore, pool: ServerPool, loop_runner: LoopThread,
                 pools: PoolConfig, data_dir: Path, policy: str = "adaptive", max_batch: int = 4,
                 simulated: bool = False) -> None:
        self.store = store
        self.pool = pool
        self.pools = pools
        self.policy = policy
        self.max_batch = max_batch
        self.simulated = simulated
        self.images_dir = data_dir / "images"
        self.thumbs_dir = data_dir / "thumbs"
        self.live = LiveBoard()
        self.views = ViewCache()
        self._runner = loop_runner
        self._catalog: Catalog | None = None

    # ------------------------------------------------------------------ catalog / servers
    def refresh_catalog(self) -> Catalog:
        """Re-read health, inventories and metadata from every server."""
        async def refresh() -> Catalog:
            await self.pool.refresh()
            return await read_catalog(self.pool, self.pools)

        self._catalog = self._runner.run(refresh())
        return self._catalog

    def catalog(self) -> Catalog:
        """The current catalog, rebuilt when the servers' inventories changed (a checkpoint
        deleted, a server lost or back) so plans never name models no online server has."""
        stale = self._catalog is None or self._catalog.inventory != self.pool.inventory_union()
        if stale or not self._catalog.checkpoints:  # type: ignore[union-attr]
            self.refresh_catalog()
        assert self._catalog is not None
        return self._catalog

    def gpus(self) -> list[ServerStatus]:
        statuses = self.pool.statuses()
        for status in statuses:  # the embedded simulator is known from config, not from the wire
            status.simulated = status.simulated or self.simulated
        return statuses

    def _require_online(self) -> Catalog:
        if not any(s.online for s in self.pool.statuses()):
            self._runner.run(self.pool.refresh())
            if not any(s.online for s in self.pool.statuses()):
                raise NoServerOnline("no ComfyUI server is online; start one or check the URLs, then retry")
        catalog = self.catalog()
        if not catalog.checkpoints:
            raise NoServerOnline("the online ComfyUI servers report no checkpoints")
        return catalog

    # ------------------------------------------------------------------ generate
    def generate(self, user_id: str, req: GenerateRequest) -> BatchTicket:
        """Validate, plan, record and start a batch; returns at once while images render."""
        catalog = self._require_online()
        self._check_overrides(req, catalog)
        if req.is_refine:
            return self._refine(user_id, req, catalog)
        parsed = parse_prompt(req.prompt)
        if not parsed.text.strip():
            raise InvalidRequest("the prompt has only <lora:...> tags; describe the image too")
        family, tier = req.model_family, req.tier
        pool = self._pool_for(family, tier, catalog)
        rec = self._recommend(user_id, parsed, pool, tier, req.count, quick=not req.explore_mode)
        groups = self._groups(user_id, parsed, rec, catalog, family, req)
        settings = self._settings(family, req.aspect_ratio, tier, req)
        base_seed = req.seed if req.seed is not None else random.randint(0, MAX_SEED - 64)
        plan = plan_txt2img(groups, negative=req.negative_prompt, settings=settings, base_seed=base_seed,
                            family=family, max_batch=self.max_batch)
        record = self._batch_record(user_id, req, parsed, rec, family, tier, parent=None)
        return self._start(record, plan, rec)

    def _check_overrides(self, req: GenerateRequest, catalog: Catalog) -> None:
        if req.sampler_name is not None and req.sampler_name not in catalog.samplers:
            raise InvalidRequest(f"sampler_name {req.sampler_name!r} is not offered by the servers; "
                                 f"choose one of {', '.join(catalog.samplers[:12])}, ...")
        if req.scheduler is not None and req.scheduler not in catalog.schedulers:
            raise InvalidRequest(f"scheduler {req.scheduler!r} is not offered by the servers; "
                                 f"choose one of {', '.join(catalog.schedulers)}")

    def _pool_for(self, family: str, tier: str, catalog: Catalog) -> list[str]:
        pool = self.pools.pool_for(family, tier, catalog.checkpoints)
        if not pool:
            raise InvalidRequest(f"no {family} checkpoint is available on the servers for the {tier} tier")
        return pool

    def _recommend(self, user_id: str, parsed: ParsedPrompt, pool: list[str], tier: str, count: int,
                   *, quick: bool) -> Recommendation:
        stems = tuple(k.stem for k in parsed.keywords)
        evidence = self.store.arm_stats(user_id, "checkpoint", stems, pool)
        base = self.store.base_rate(user_id, "checkpoint")
        req = RecommendRequest(keywords=stems, pool=tuple(pool), tier=tier, count=count, quick=quick,
                               prompt=parsed.text[:120])
        return recommend(req, evidence, base, policy=self.policy, rng=random.Random())

    def recommendation(self, user_id: str, prompt: str, family: str, tier: str) -> Recommendation:
        """What the next batch for this prompt would be (no side effects)."""
        catalog = self._require_online()
        parsed = parse_prompt(prompt)
        return self._recommend(user_id, parsed, self._pool_for(family, tier, catalog), tier, 20, quick=False)

    def _lora_choices(self, user_id: str, parsed: ParsedPrompt, catalog: Catalog, family: str,
                      auto_lora: bool) -> list[LoraChoice]:
        """Explicit `<lora:...>` tags (honoured, flagged when their base model differs) + Auto-LoRA."""
        stems = tuple(k.stem for k in parsed.keywords)
        names = [info.name for info in catalog.loras]
        prefs = None
        if auto_lora and names:
            evidence = self.store.arm_stats(user_id, "lora", stems, names)
            liked = lora_preferences(stems, names, evidence, self.store.base_rate(user_id, "lora"))
            # only LoRAs with evidence for these keywords; the others stay neutral for Auto-LoRA
            seen = {arm for _, arm in evidence}
            prefs = {name: score for name, score in liked.items() if name in seen}
        choices = choose_loras(parsed, catalog.loras, family, auto=auto_lora, preference=prefs)
        missing = [c.name for c in choices if c.explicit and c.name not in names]
        if missing:
            raise InvalidRequest(f"LoRA {missing[0]!r} from the prompt is not on any server; "
                                 f"available: {', '.join(names[:10])}")
        return choices

    def _groups(self, user_id: str, parsed: ParsedPrompt, rec: Recommendation, catalog: Catalog, family: str,
                req: GenerateRequest) -> list[CheckpointGroup]:
        choices = self._lora_choices(user_id, parsed, catalog, family, req.auto_lora)
        allocation = [(c, n) for c, n in rec.allocation.items() if n > 0]
        # Explore compares LoRA sets across checkpoint groups; Quick applies the best set everywhere
        variations = vary_loras(choices, len(allocation)) if req.explore_mode else [tuple(choices)] * len(allocation)
        return [
            CheckpointGroup(checkpoint=checkpoint, count=count,
                            loras=tuple(LoraSpec(c.name, round(c.strength, 2)) for c in chosen),
                            positive=apply_triggers(parsed.text, chosen))
            for (checkpoint, count), chosen in zip(allocation, variations)
        ]

    def _settings(self, family: str, aspect: str, tier: str, req: GenerateRequest) -> RenderSettings:
        d = defaults_for(family, tier)
        width, height = size_for(family, aspect, tier)
        base = RenderSettings(width=width, height=height, steps=d.steps, cfg=d.cfg, sampler_name=d.sampler_name,
                              scheduler=d.scheduler, hires_scale=d.hires_scale)
        return apply_overrides(base, width=req.width, height=req.height, steps=req.steps, cfg=req.cfg,
                               sampler_name=req.sampler_name, scheduler=req.scheduler)

    def _batch_record(self, user_id: str, req: GenerateRequest, parsed: ParsedPrompt, rec: Recommendation,
                      family: str, tier: str, parent: str | None, prompt: str | None = None) -> BatchRecord:
        return BatchRecord(
            batch_id=new_id(), user_id=user_id, session_id=req.session_id, prompt=prompt or req.prompt,
            negative_prompt=req.negative_prompt, keywords=tuple(k.stem for k in parsed.keywords), tier=tier,
            family=family, explore_mode=req.explore_mode, auto_lora=req.auto_lora, strategy=rec.mode,
            recommended=rec.recommended, confidence=rec.confidence, count=0, policy=rec.policy,
            parent_batch_id=parent,
        )

    # ------------------------------------------------------------------ refine
    def _refine(self, user_id: str, req: GenerateRequest, catalog: Catalog) -> BatchTicket:
        parents = []
        for image_id in dict.fromkeys(req.parent_image_ids):
            image = self.store.get_image(image_id, user_id)
            if image is None or image.status != "done" or not image.path:
                raise InvalidRequest(f"parent image {image_id!r} is unknown or not finished")
            parents.append(image)
        first = self.store.get_batch(parents[0].batch_id, user_id)
        assert first is not None
        if first.tier not in NEXT_TIER:
            raise InvalidRequest(f"these images are already at the {first.tier} tier, the highest")
        family, tier = self.pools.refine_target(first.family, first.tier)
        prompt = req.prompt if req.prompt.strip() else first.prompt
        parsed = parse_prompt(prompt)
        pool = self._pool_for(family, tier, catalog)
        rec = self._recommend(user_id, parsed, pool, tier, len(parents), quick=True)
        fresh = self._lora_choices(user_id, parsed, catalog, family, first.auto_lora)
        aspect = closest_aspect(parents[0].width, parents[0].height)
        settings = replace(self._settings(family, aspect, tier, req), denoise=REFINE_DENOISE)
        refine_parents = []
        for image in parents:
            # keep the user's checkpoint when the next tier offers it: they picked its look
            checkpoint = image.checkpoint if image.checkpoint in pool else rec.recommended
            if family == first.family:  # same LoRAs as the draft the user liked
                kept = {n for n, _ in image.loras}
                chosen = [c for c in fresh if c.name in kept]
                loras = tuple(LoraSpec(n, s) for n, s in image.loras)
            else:  # another family: the draft's LoRAs would not fit, choose again
                chosen = fresh
                loras = tuple(LoraSpec(c.name, round(c.strength, 2)) for c in chosen)
            refine_parents.append(RefineParent(image.image_id, image.seed, self._image_path(image.image_id).read_bytes(),
                                               checkpoint, loras, apply_triggers(parsed.text, chosen)))
        # one refined image per parent unless the caller asked for a count
        wanted = req.count if "count" in req.model_fields_set else len(parents)
        variants = min(MAX_REFINE_VARIANTS, max(1, wanted // len(parents)))
        plan = plan_refine(refine_parents, negative=req.negative_prompt or first.negative_prompt,
                           settings=settings, family=family, variants=variants)
        kept = sum(1 for p, r in zip(parents, refine_parents) if p.checkpoint == r.checkpoint)
        rec = replace(rec, mode="refine", message=(
            f"Refining {len(parents)} image(s) at the {family} {tier} tier: {kept} keep their checkpoint"
            + (f", {len(parents) - kept} move to {rec.recommended}" if kept < len(parents) else "")))
        log.info("Refine for %s: %s", user_id, rec.message)
        record = self._batch_record(user_id, req, parsed, rec, family, tier, parent=first.batch_id, prompt=prompt)
        return self._start(record, plan, rec)

    # ------------------------------------------------------------------ run
    def _start(self, record: BatchRecord, plan: BatchPlan, rec: Recommendation) -> BatchTicket:
        images = [self._image_record(record, p) for p in plan.images]
        record = BatchRecord(**{**record.__dict__, "count": len(images)})
        self.store.add_batch(record, images, moved_on=True)
        gpu_distribution = self.pool.plan(list(plan.jobs))
        steps = sum(job.spec.steps * (2 if job.spec.hires_scale else 1) for job in plan.jobs)
        self.live.open(record.batch_id, len(images), steps)
        self._runner.submit(self._run(record, plan))
        log.info("Batch %s for %s: %d images, checkpoints %s, servers %s", record.batch_id, record.user_id,
                 len(images), plan.checkpoint_distribution(), gpu_distribution)
        loras = {spec.name: spec.strength for job in plan.jobs for spec in job.spec.loras}
        return BatchTicket(
            batch_id=record.batch_id, total_count=len(images), gpu_distribution=gpu_distribution,
            checkpoint_distribution=plan.checkpoint_distribution(),
            loras=[{"name": n, "strength": s} for n, s in loras.items()],
            strategy={"mode": rec.mode, "recommended": rec.recommended, "confidence": round(rec.confidence, 4),
                      "message": rec.message, "policy": rec.policy},
            keywords=list(record.keywords),
            parent_image_ids=[p.parent_image_id for p in plan.images if p.parent_image_id],
        )

    @staticmethod
    def _image_record(batch: BatchRecord, p: PlannedImage) -> ImageRecord:
        s = p.settings
        return ImageRecord(
            image_id=p.image_id, batch_id=batch.batch_id, user_id=batch.user_id, checkpoint=p.checkpoint,
            loras=tuple((l.name, l.strength) for l in p.loras), seed=p.seed, batch_index=p.batch_index,
            width=s.width, height=s.height, steps=s.steps, cfg=s.cfg, sampler_name=s.sampler_name,
            scheduler=s.scheduler, parent_image_id=p.parent_image_id, denoise=s.denoise, hires_scale=s.hires_scale,
        )

    async def _run(self, record: BatchRecord, plan: BatchPlan) -> None:
        """Drive the pool for one batch, storing each job's images the moment they arrive.

        The pool delivers a job's images back to back; they are written to disk one by one and
        recorded in one transaction per job, which keeps the single database writer free for clicks.
        """
        by_job: dict[str, list[PlannedImage]] = {}
        for p in plan.images:
            by_job.setdefault(p.job_id, []).append(p)
        arrived: dict[str, list[tuple[PlannedImage, ImageResult]]] = {}
        finished: set[str] = set()
        batch_id = record.batch_id
        try:
            async for event in self.pool.run(list(plan.jobs), batch_key=batch_id):
                if isinstance(event, ImageResult):
                    job = arrived.setdefault(event.job_id, [])
                    job.append((by_job[event.job_id][event.batch_index], event))
                    if len(job) == len(by_job[event.job_id]):
                        await asyncio.to_thread(self._save_images, arrived.pop(event.job_id))
                        finished.update(image.image_id for image, _ in job)
                        self.live.images_done(batch_id, [image.image_id for image, _ in job])
                elif isinstance(event, JobProgress):
                    self.live.images_running(batch_id, [p.image_id for p in by_job[event.job_id]])
                    self.live.step(batch_id)
                elif isinstance(event, PreviewFrame):
                    self.live.preview(batch_id, event.image)
                elif isinstance(event, JobFailed):
                    lost = [p.image_id for p in by_job[event.job_id] if p.image_id not in finished]
                    await asyncio.to_thread(self._fail_images, batch_id, lost, event.reason)
                    finished.update(lost)
        except Exception as exc:  # the batch must end cleanly whatever the pool raised
            log.exception("Batch %s stopped: %s", batch_id, exc)
        finally:
            lost = [p.image_id for p in plan.images if p.image_id not in finished]
            await asyncio.to_thread(self._fail_images, batch_id, lost, "cancelled before it finished")
            self.live.finish(batch_id)

    def _image_path(self, image_id: str) -> Path:
        return self.images_dir / image_id[:2] / f"{image_id}.png"

    def _save_images(self, results: list[tuple[PlannedImage, ImageResult]]) -> None:
        """Write a job's images under the app's own ids, then record them (the client already
        refused anything but a sane PNG)."""
        steps = []
        for image, event in results:
            path = self._image_path(image.image_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(event.png)
            tmp.replace(path)
            steps.append(ImageStatus(image.image_id, "done", event.server, str(path), seconds=event.seconds))
        self.store.update_images(steps)

    def _fail_images(self, batch_id: str, image_ids: list[str], reason: str) -> None:
        self.store.update_images([ImageStatus(i, "failed", error=reason) for i in image_ids])
        for image_id in image_ids:
            self.live.image_failed(batch_id, image_id, reason)

    def cancel(self, user_id: str, batch_id: str) -> None:
        self.batch_view(user_id, batch_id)  # 404 unless it is this user's
        self._runner.run(self.pool.cancel(batch_id))

    # ------------------------------------------------------------------ read
    @staticmethod
    def _mine(view: BatchView, user_id: str) -> BatchView:
        """Another user's batch answers exactly like an unknown one (404, so ids don't leak)."""
        if view.batch.user_id != user_id:
            raise NotFound(f"batch {view.batch.batch_id!r} not found")
        return view

    def batch_view(self, user_id: str, batch_id: str) -> BatchView:
        """The batch as it is now (cached until an image finishes or a review changes it)."""
        view = self.views.get(batch_id, self.live.get(batch_id), lambda: self._build_view(batch_id))
        return self._mine(view, user_id)

    def _build_view(self, batch_id: str) -> BatchView:
        snapshot = self.store.batch_snapshot(batch_id)
        if snapshot is None:
            raise NotFound(f"batch {batch_id!r} not found")
        batch, states = snapshot.batch, snapshot.facts.states()
        records = list(snapshot.images)
        live = self.live.get(batch_id)
        order = {image_id: i for i, image_id in enumerate(live.order)} if live else {}
        running = live.running if live else frozenset()

        def status(r: ImageRecord) -> str:
            return "running" if r.status == "queued" and r.image_id in running else r.status

        records.sort(key=lambda r: (r.status != "done", order.get(r.image_id, len(order)), r.image_id))
        views = tuple(ImageView(r, status(r), states.get(r.image_id, "none")) for r in records)
        finished = live.finished if live else True
        return BatchView(batch, batch_status([v.status for v in views], finished), views, live)

    def image_file(self, user_id: str, image_id: str) -> Path:
        image = self.store.get_image(image_id, user_id)
        if image is None or image.status != "done" or not image.path:
            raise NotFound(f"image {image_id!r} not found")
        return self._image_path(image_id)

    def gallery_of(self, view: BatchView) -> list[tuple[str, str]]:
        """(thumbnail path, caption) of each finished image, in completion order, selection drawn in."""
        return [(str(thumbnail(self._image_path(v.record.image_id), self.thumbs_dir, v.state)), caption(v))
                for v in view.images if v.status == "done"]

    def stream(self, user_id: str, batch_id: str, timeout: float = 600.0) -> Iterator[BatchView]:
        """Yield a fresh view as a running batch changes, ending with its final view.

        A finished or failed image is shown at once; sampler steps and previews (many per second
        across GPUs) at most every `STEP_INTERVAL`, so streaming costs the database little.
        """
        self.batch_view(user_id, batch_id)  # 404 before streaming anything
        version, images_version, last, pending = -1, -1, 0.0, False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pending:  # progress to show: wake early only if an image changes
                wait = max(0.0, STEP_INTERVAL - (time.monotonic() - last))
                live = self.live.wait(batch_id, images_version, timeout=wait, images_only=True)
            else:
                live = self.live.wait(batch_id, version, timeout=1.0)
            if live is None or live.finished:
                yield self.batch_view(user_id, batch_id)
                return
            pending = pending or live.version != version
            version = live.version
            if pending and (live.images_version != images_version or time.monotonic() - last >= STEP_INTERVAL):
                images_version, last, pending = live.images_version, time.monotonic(), False
                yield self.batch_view(user_id, batch_id)

    def lineage(self, user_id: str, image_id: str) -> list[dict[str, object]]:
        """The refine chain from the first draft to this image (oldest first)."""
        if self.store.get_image(image_id, user_id) is None:
            raise NotFound(f"image {image_id!r} not found")
        return [ImageView(r, r.status, "none").as_json() for r in self.store.lineage(image_id)]

    # ------------------------------------------------------------------ stats
    def arm_totals(self, user_id: str, kind: ArmKind, scope: str = "user") -> dict[str, dict]:
        """`{arm: {"selected": n, "total": n, "selection_rate": r}}` — the API's exact shape."""
        return self.store.arm_totals(None if scope == "global" else user_id, kind)

    def keyword_table(self, user_id: str, scope: str = "user", keyword: str | None = None) -> pd.DataFrame:
        """Keyword × checkpoint rates, each stem with the word the user actually typed."""
        frame = self.store.keyword_table(None if scope == "global" else user_id, "checkpoint", keyword)
        labels = self.keyword_labels(user_id)
        frame.insert(1, "label", [labels.get(k, k) for k in frame["keyword"]])
        return frame.rename(columns={"arm": "checkpoint"})

    def keyword_stats(self, user_id: str, scope: str = "user", keyword: str | None = None) -> list[dict]:
        return self.keyword_table(user_id, scope, keyword).to_dict(orient="records")

    def keyword_labels(self, user_id: str, recent: int = 200) -> dict[str, str]:
        """Stem → display form, from the user's recent prompts (stems like "cherri" read badly).

        Derived rather than stored: parsing a prompt takes ~30 µs, and the Stats tab is no hot path.
        """
        labels: dict[str, str] = {}
        for batch in reversed(self.store.recent_batches(user_id, limit=recent)):
            for kw in parse_prompt(batch.prompt).keywords:
                labels[kw.stem] = kw.display
        return labels

    def import_preferences(self, user_id: str, data: bytes, fmt: str) -> int:
        try:
            return self.store.import_preferences(user_id, data, fmt)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from exc

    def gpus_json(self) -> list[dict[str, object]]:
        return [{**status.__dict__, "checkpoints": list(status.checkpoints)} for status in self.gpus()]

    def loras_json(self) -> list[dict[str, object]]:
        return [{"name": i.name, "base_model": i.base_model, "tags": list(i.tags),
                 "trigger_words": list(i.trigger_words), "title": i.title} for i in self.catalog().loras]

    # ------------------------------------------------------------------ feedback
    def feedback(self, user_id: str, req: FeedbackRequest) -> FeedbackResult:
        """Apply a review; every id is checked first so a bad request writes nothing."""
        # a batch's owner and image ids never change: any cached view will do to check them
        view = self._mine(self.views.peek(req.batch_id) or self.batch_view(user_id, req.batch_id), user_id)
        batch = view.batch
        known = {v.record.image_id for v in view.images}
        listed = [*req.selected, *req.unselected, *req.rejected]
        unknown = sorted({i for i in listed if i not in known})
        if unknown:
            raise InvalidRequest(f"images not in batch {batch.batch_id}: {', '.join(unknown[:5])}")
        both = set(req.selected) & (set(req.rejected) | set(req.unselected))
        if both:
            raise InvalidRequest(f"images both selected and unselected/rejected: {', '.join(sorted(both)[:5])}")
        result: FeedbackResult | None = None
        steps = [("unselect", req.unselected), ("select", req.selected), ("reject", req.rejected)]
        if req.reject_all:
            steps.append(("reject_all", []))
        if req.viewed or not any(ids for _, ids in steps[:3]) and not req.reject_all:
            steps.append(("viewed", []))
        try:
            for action, ids in steps:
                if ids or action in ("reject_all", "viewed"):
                    result = self.store.apply_feedback(user_id, batch.batch_id, action, ids)
        except (UnknownBatchError, UnknownImageError) as exc:
            raise InvalidRequest(str(exc)) from exc
        finally:
            self.views.reviewed(batch.batch_id)
        assert result is not None
        return result

    def toggle(self, user_id: str, batch_id: str, index: int) -> FeedbackResult | None:
        """A click on the gallery's `index`-th thumbnail: select it, or unselect it if selected."""
        view = self.batch_view(user_id, batch_id)
        done = [v for v in view.images if v.status == "done"]
        if not 0 <= index < len(done):
            return None
        target = done[index]
        action = "unselect" if target.state == "selected" else "select"
        try:
            return self.store.apply_feedback(user_id, batch_id, action, [target.record.image_id])
        finally:
            self.views.reviewed(batch_id)

    # ------------------------------------------------------------------ lifecycle
    def recover_interrupted(self) -> int:
        """Images left queued/running by a previous process can never finish: mark them failed."""
        frame = self.store.read_sql("SELECT image_id FROM images WHERE status IN ('queued', 'running')")
        stale = list(frame["image_id"])
        self.store.update_images([ImageStatus(i, "failed", error=INTERRUPTED) for i in stale])
        if stale:
            log.info("Marked %d images of a previous run as failed (%s)", len(stale), INTERRUPTED)
        return len(stale)
