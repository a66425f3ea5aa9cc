"""From a request to a planned batch: what to render, on which checkpoints, with which LoRAs.

The planner reads evidence (preferences from the store, what the servers offer from the catalog)
and decides; it writes nothing and starts nothing. The pure parts — chunking, seeds, jobs — are
in `draftgrid.planning`; the recommendation itself in `learning.recommend`.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, replace

import numpy as np

from comfy.models import LoraSpec
from comfy.workflow import defaults_for, size_for
from draftgrid.catalog import Catalog
from draftgrid.cell_planner import plan_cells
from draftgrid.errors import Gone, InvalidRequest
from draftgrid.image_files import ImageFiles
from draftgrid.learnt_settings import LearntSettings, learnt_cfgs, learnt_settings, negative_suggestions
from draftgrid.planning import (
    MAX_SEED, BatchPlan, CheckpointGroup, RefineParent, RenderSettings, apply_overrides, new_id, plan_refine, plan_txt2img,
)
from draftgrid.schemas import GenerateRequest, closest_aspect
from draftgrid.sharing import PreferenceSharing
from families.accelerators import FastSettings, fast_checkpoints, fast_lora
from families.recognise import family_from_name
from families.registry import registry
from learning.keywords import parse_prompt
from learning.lora import apply_triggers, choose_loras, lora_reason
from learning.models import BatchRecord, ImageRecord, LoraChoice, ParsedPrompt, Recommendation
from learning.pools import PoolConfig
from learning.recommend.planner import FOLLOWS_TASTE_CHANGES, RecommendRequest, lora_preferences, recommend
from learning.store.preference_store import PreferenceStore

log = logging.getLogger(__name__)

MAX_REFINE_VARIANTS = 8
REFINE_DENOISE = 0.55  # img2img strength: keeps the draft's composition, redraws the detail


@dataclass(frozen=True)
class PlannedBatch:
    """A batch ready to start: its record, its plan (images and pool jobs) and why."""

    record: BatchRecord
    plan: BatchPlan
    rec: Recommendation


class BatchPlanner:
    """Turns generate and refine requests into planned batches for one deployment's settings."""

    def __init__(self, store: PreferenceStore, pools: PoolConfig, files: ImageFiles, sharing: PreferenceSharing, *,
                 policy: str, max_batch: int) -> None:
        self._store = store
        self._sharing = sharing
        self._pools = pools
        self._files = files
        self._policy = policy
        self._max_batch = max_batch

    def plan(self, user_id: str, req: GenerateRequest, catalog: Catalog) -> PlannedBatch:
        self._check_overrides(req, catalog)
        planned = self._refine(user_id, req, catalog) if req.is_refine else self._txt2img(user_id, req, catalog)
        return replace(planned, plan=planned.plan.with_split_models(catalog.split_models))

    @staticmethod
    def lora_reasons(batch: BatchRecord, names: list[str], catalog: Catalog) -> dict[str, str]:
        """Why each LoRA file of the batch went with its prompt, in words (`lora_reason`)."""
        parsed = parse_prompt(batch.prompt)
        return {name: lora_reason(parsed, name, catalog.loras) for name in names}

    def recommendation(self, user_id: str, prompt: str, family: str, tier: str, catalog: Catalog,
                       negative_prompt: str = "") -> Recommendation:
        """What the next batch for this prompt would be (no side effects): checkpoints, the learnt
        LoRA set and CFG (Quick mode's), and negative terms to suggest."""
        parsed = parse_prompt(prompt)
        rec = self._recommend(user_id, parsed, self._pool_for(family, tier, catalog), tier, 20, quick=False)
        choices = self._lora_choices(user_id, parsed, catalog, family, auto_lora=True)
        learnt = self._learnt(user_id, parsed, family, choices, rec, defaults_for(family, tier).cfg, cfg_explicit=False)
        stems = tuple(k.stem for k in parsed.keywords)
        negatives = negative_suggestions(self._store, user_id, stems, negative_prompt)
        return replace(rec, settings={**learnt.as_json(),
                                      "negative_suggestions": [n.as_json() for n in negatives]})

    # ------------------------------------------------------------------ text to image
    def _txt2img(self, user_id: str, req: GenerateRequest, catalog: Catalog) -> PlannedBatch:
        parsed = parse_prompt(req.prompt)
        if not parsed.text.strip():
            raise InvalidRequest("the prompt has only <lora:...> tags; describe the image too")
        family, tier = req.model_family, req.tier
        pool = self._pool_for(family, tier, catalog)
        fast = self.fast_draft(family, pool, catalog) if tier == "draft" and req.fast_drafts else None
        if fast is not None and fast.accelerator.kind == "checkpoint":  # draft on the distilled checkpoints only
            pool = [f.file for f in fast_checkpoints(family, pool) if f.accelerator == fast.accelerator]
        else:
            pool = self._full_models(family, pool)
        rec = self._recommend(user_id, parsed, pool, tier, req.count, quick=not req.explore_mode)
        settings = self.render_settings(family, req.aspect_ratio, tier, req, fast)
        cfg_fixed = req.cfg is not None or fast is not None  # the user's CFG or the accelerator's: not learnt
        groups, rec = self._groups(user_id, parsed, rec, catalog, family, req, settings.cfg, cfg_fixed=cfg_fixed)
        prefix = registry().get(family).quality_prefix if req.quality_tags else ""
        if prefix:  # the family's quality tags (Pony's score_9, ...), asked for
            groups = [replace(g, positive=prefix + g.positive) for g in groups]
        accelerator = ((LoraSpec(fast.file, fast.accelerator.strength),)
                       if fast is not None and fast.accelerator.kind == "lora" else ())
        if fast is not None:
            rec = replace(rec, message=f"{rec.message} · Fast drafts on: {fast.file} ({fast.accelerator.name}, "
                                       f"{settings.steps} steps)")
        base_seed = req.seed if req.seed is not None else random.randint(0, MAX_SEED - 64)
        plan = plan_txt2img(groups, negative=req.negative_prompt, settings=settings, base_seed=base_seed,
                            family=family, max_batch=self._max_batch, accelerator=accelerator)
        record = self._batch_record(user_id, req, parsed, rec, family, tier, parent=None, cfg_explicit=cfg_fixed)
        return PlannedBatch(record, plan, rec)

    @staticmethod
    def fast_draft(family: str, pool: list[str], catalog: Catalog) -> FastSettings | None:
        """The draft tier's accelerator: a distilled LoRA of the family on the servers, else a
        distilled checkpoint in the draft pool; None when the servers have neither."""
        fast = fast_lora(family, {info.name: (info.base_model or family_from_name(info.name), info.accelerator)
                                  for info in catalog.loras})
        if fast is None:
            fast = next(iter(fast_checkpoints(family, pool)), None)
        log.info("fast drafts for %s: %s", family, f"{fast.file} ({fast.accelerator.name})" if fast else "none on the servers")
        return fast

    @staticmethod
    def _full_models(family: str, pool: list[str]) -> list[str]:
        """The pool without its distilled checkpoints (they run at full settings only badly),
        unless it has nothing else."""
        distilled = {f.file for f in fast_checkpoints(family, pool)}
        return [c for c in pool if c not in distilled] or pool

    def _check_overrides(self, req: GenerateRequest, catalog: Catalog) -> None:
        if req.sampler_name is not None and req.sampler_name not in catalog.samplers:
            raise InvalidRequest(f"sampler_name {req.sampler_name!r} is not offered by the servers; "
                                 f"choose one of {', '.join(catalog.samplers[:12])}, ...")
        if req.scheduler is not None and req.scheduler not in catalog.schedulers:
            raise InvalidRequest(f"scheduler {req.scheduler!r} is not offered by the servers; "
                                 f"choose one of {', '.join(catalog.schedulers)}")

    def _pool_for(self, family: str, tier: str, catalog: Catalog) -> list[str]:
        pool = self._pools.pool_for(family, tier, catalog.checkpoints)
        if not pool:
            available = catalog.families()
            raise InvalidRequest(f"no {family} model is on the servers; families available: "
                                 f"{', '.join(available) or 'none'}")
        return pool

    def _recommend(self, user_id: str, parsed: ParsedPrompt, pool: list[str], tier: str, count: int,
                   *, quick: bool) -> Recommendation:
        stems = tuple(k.stem for k in parsed.keywords)
        follows = self._policy in FOLLOWS_TASTE_CHANGES
        evidence = (self._store.arm_evidence if follows else self._store.arm_stats)(user_id, "checkpoint", stems, pool)
        changed = self._store.recent_taste_changes(user_id, "checkpoint", stems) if follows else ()
        display = {k.stem: k.display for k in parsed.keywords}
        base = self._store.base_rate(user_id, "checkpoint")
        req = RecommendRequest(keywords=stems, pool=tuple(pool), tier=tier, count=count, quick=quick,
                               prompt=parsed.text[:120], changed_keywords=tuple(display[k] for k in changed))
        crowd = self._sharing.crowd_for(user_id, stems, pool)
        return recommend(req, evidence, base, policy=self._policy, rng=random.Random(), crowd=crowd)

    def _lora_choices(self, user_id: str, parsed: ParsedPrompt, catalog: Catalog, family: str,
                      auto_lora: bool) -> list[LoraChoice]:
        """Explicit `<lora:...>` tags (honoured, flagged when their base model differs) + Auto-LoRA."""
        stems = tuple(k.stem for k in parsed.keywords)
        names = [info.name for info in catalog.loras]
        styles = [info.name for info in catalog.loras if info.accelerator is None]  # accelerators are no taste
        prefs = None
        if auto_lora and styles:
            evidence = self._store.arm_stats(user_id, "lora", stems, styles)
            liked = lora_preferences(stems, styles, evidence, self._store.base_rate(user_id, "lora"))
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
                req: GenerateRequest, cfg: float, *, cfg_fixed: bool) -> tuple[list[CheckpointGroup], Recommendation]:
        """The batch's cells (`draftgrid.cell_planner`) and the recommendation with the learnt
        LoRA set and CFG in its strategy line and settings."""
        choices = self._lora_choices(user_id, parsed, catalog, family, req.auto_lora)
        allocation = {c: n for c, n in rec.allocation.items() if n > 0}
        learnt = self._learnt(user_id, parsed, family, choices, rec, cfg, cfg_explicit=cfg_fixed)
        groups = plan_cells(allocation, learnt.options, parsed.text, explore=req.explore_mode,
                            rng=np.random.default_rng())
        log.info("LoRA/CFG cells for %s: %d cells over %d checkpoints (%s)", user_id, len(groups), len(allocation),
                 learnt.summary())
        return groups, replace(rec, message=f"{rec.message}; {learnt.summary()}", settings=learnt.as_json())

    def _learnt(self, user_id: str, parsed: ParsedPrompt, family: str, choices: list[LoraChoice],
                rec: Recommendation, cfg: float, *, cfg_explicit: bool) -> LearntSettings:
        stems = tuple(k.stem for k in parsed.keywords)
        return learnt_settings(self._store, user_id, stems, family, choices, list(rec.allocation) or [rec.recommended],
                               rec.recommended, cfg, cfg_explicit)

    @staticmethod
    def render_settings(family: str, aspect: str, tier: str, req: GenerateRequest,
                  fast: FastSettings | None = None) -> RenderSettings:
        d = defaults_for(family, tier)
        width, height = size_for(family, aspect, tier)
        base = RenderSettings(width=width, height=height, steps=d.steps, cfg=d.cfg, sampler_name=d.sampler,
                              scheduler=d.scheduler, hires_scale=d.hires_scale)
        if fast is not None:
            base = replace(base, steps=fast.steps, cfg=fast.accelerator.cfg, sampler_name=fast.accelerator.sampler,
                           scheduler=fast.accelerator.scheduler, hires_scale=None)
        return apply_overrides(base, width=req.width, height=req.height, steps=req.steps, cfg=req.cfg,
                               sampler_name=req.sampler_name, scheduler=req.scheduler)

    @staticmethod
    def _batch_record(user_id: str, req: GenerateRequest, parsed: ParsedPrompt, rec: Recommendation,
                      family: str, tier: str, parent: str | None, cfg_explicit: bool,
                      prompt: str | None = None) -> BatchRecord:
        return BatchRecord(
            batch_id=new_id(), user_id=user_id, session_id=req.session_id, prompt=prompt or req.prompt,
            negative_prompt=req.negative_prompt, keywords=tuple(k.stem for k in parsed.keywords), tier=tier,
            cfg_explicit=cfg_explicit,
            family=family, explore_mode=req.explore_mode, auto_lora=req.auto_lora, strategy=rec.mode,
            recommended=rec.recommended, confidence=rec.confidence, count=0, policy=rec.policy,
            parent_batch_id=parent,
        )

    # ------------------------------------------------------------------ refine
    def _refine_parents(self, user_id: str, image_ids: list[str]) -> list[ImageRecord]:
        parents = []
        for image_id in dict.fromkeys(image_ids):
            image = self._store.get_image(image_id, user_id)
            if image is None or image.status != "done" or not image.path:
                raise InvalidRequest(f"parent image {image_id!r} is unknown or not finished")
            if image.pruned_at is not None:
                raise Gone(f"parent image {image_id} was removed to save space (drafts nobody selected go "
                           "first), so it cannot be refined; its settings and seed are kept, so it can be "
                           "generated again")
            parents.append(image)
        return parents

    def _refine(self, user_id: str, req: GenerateRequest, catalog: Catalog) -> PlannedBatch:
        parents = self._refine_parents(user_id, req.parent_image_ids)
        first = self._store.get_batch(parents[0].batch_id, user_id)
        assert first is not None
        target = self._pools.refine_target(first.family, first.tier)
        if target is None:
            raise InvalidRequest(f"these images are {first.family} {first.tier} images, and the pools file "
                                 f"names no refine target for them (add one under [refine])")
        family, tier = target
        prompt = req.prompt if req.prompt.strip() else first.prompt
        parsed = parse_prompt(prompt)
        pool = self._full_models(family, self._pool_for(family, tier, catalog))
        rec = self._recommend(user_id, parsed, pool, tier, len(parents), quick=True)
        fresh = self._lora_choices(user_id, parsed, catalog, family, first.auto_lora)
        aspect = closest_aspect(parents[0].width, parents[0].height)
        settings = replace(self.render_settings(family, aspect, tier, req), denoise=REFINE_DENOISE)
        stems = tuple(k.stem for k in parsed.keywords)
        # the learnt CFG per checkpoint, starting from this tier's; the user's CFG when set
        cfgs = {} if req.cfg is not None else learnt_cfgs(self._store, user_id, stems, family, pool, settings.cfg)
        refine_parents = []
        for image in parents:
            # keep the user's checkpoint when the next tier offers it: they picked its look
            checkpoint = image.checkpoint if image.checkpoint in pool else rec.recommended
            if family == first.family:  # same LoRAs as the draft the user liked (an accelerator is never on it)
                kept = {n for n, _ in image.loras}
                chosen = [c for c in fresh if c.name in kept]
                loras = tuple(LoraSpec(n, s) for n, s in image.loras if n in kept)
            else:  # another family: the draft's LoRAs would not fit, choose again
                chosen = fresh
                loras = tuple(LoraSpec(c.name, round(c.strength, 2)) for c in chosen)
            refine_parents.append(RefineParent(image.image_id, image.seed, self._files.read(image.image_id),
                                               checkpoint, loras, apply_triggers(parsed.text, chosen),
                                               cfgs.get(checkpoint)))
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
        record = self._batch_record(user_id, req, parsed, rec, family, tier, parent=first.batch_id,
                                    cfg_explicit=req.cfg is not None, prompt=prompt)
        return PlannedBatch(record, plan, rec)
