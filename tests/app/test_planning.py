"""Batch planning is pure: sizes, chunks, seeds and ids follow from the inputs alone."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from comfy.models import LoraSpec
from draftgrid.planning import (
    CheckpointGroup, RefineParent, RenderSettings, apply_overrides, chunk_sizes, plan_refine, plan_txt2img,
)

SETTINGS = RenderSettings(width=512, height=512, steps=12, cfg=7.0, sampler_name="euler", scheduler="normal")


def counter_ids():
    counter = itertools.count()
    return lambda: f"id{next(counter)}"


def test_seed_example_20_drafts_split_7_7_6_in_balanced_chunks() -> None:
    groups = [CheckpointGroup(c, n, (), "a cat") for c, n in (("a.safetensors", 7), ("b.safetensors", 7),
                                                               ("c.safetensors", 6))]
    plan = plan_txt2img(groups, negative="", settings=SETTINGS, base_seed=100, family="sd15", max_batch=4,
                        make_id=counter_ids())
    assert plan.checkpoint_distribution() == {"a.safetensors": 7, "b.safetensors": 7, "c.safetensors": 6}
    assert [job.spec.batch_size for job in plan.jobs] == [4, 3, 4, 3, 3, 3]
    assert len(plan.images) == 20 and len({i.image_id for i in plan.images}) == 20


def test_chunk_k_of_every_group_shares_a_seed_for_side_by_side_comparison() -> None:
    groups = [CheckpointGroup("a", 5, (), "p"), CheckpointGroup("b", 5, (), "p")]
    plan = plan_txt2img(groups, negative="", settings=SETTINGS, base_seed=42, family="sd15", max_batch=4)
    by_ckpt = {c: [(i.seed, i.batch_index) for i in plan.images if i.checkpoint == c] for c in ("a", "b")}
    assert by_ckpt["a"] == by_ckpt["b"] == [(42, 0), (42, 1), (42, 2), (43, 0), (43, 1)]


def test_images_point_at_their_job_and_batch_index() -> None:
    lora = (LoraSpec("anime_style_v2.safetensors", 0.7),)
    plan = plan_txt2img([CheckpointGroup("a", 6, lora, "anime girl")], negative="bad", settings=SETTINGS,
                        base_seed=1, family="sd15", max_batch=4)
    jobs = {job.job_id: job for job in plan.jobs}
    for image in plan.images:
        job = jobs[image.job_id]
        assert job.spec.seed == image.seed and image.batch_index < job.spec.batch_size
        assert job.spec.loras == lora and job.spec.negative == "bad" and job.spec.positive == "anime girl"


@given(st.integers(min_value=1, max_value=64), st.integers(min_value=1, max_value=8))
def test_chunks_are_balanced_and_sum_to_count(count: int, max_batch: int) -> None:
    sizes = chunk_sizes(count, max_batch)
    assert sum(sizes) == count and max(sizes) <= max_batch and max(sizes) - min(sizes) <= 1


def test_refine_keeps_each_parents_seed_and_links_it() -> None:
    parents = [RefineParent("p1", 7, b"png1", "x", (), "p"), RefineParent("p2", 9, b"png2", "y", (), "p")]
    plan = plan_refine(parents, negative="", settings=apply_overrides(SETTINGS, denoise=0.55, steps=25),
                       family="sdxl", variants=2)
    assert [(i.parent_image_id, i.seed, i.batch_index) for i in plan.images] == [
        ("p1", 7, 0), ("p1", 7, 1), ("p2", 9, 0), ("p2", 9, 1)]
    assert all(job.spec.refine_from is not None and job.spec.denoise == 0.55 for job in plan.jobs)
    assert plan.jobs[0].spec.refine_from.png == b"png1" and plan.jobs[0].spec.steps == 25


def test_overrides_replace_only_what_was_given() -> None:
    out = apply_overrides(SETTINGS, width=768, steps=None, cfg=None)
    assert (out.width, out.height, out.steps) == (768, 512, 12)


def test_an_accelerator_lora_goes_on_every_job_but_on_no_image() -> None:
    lightning = LoraSpec("sdxl_lightning_4step_lora.safetensors", 1.0)
    style = (LoraSpec("anime.safetensors", 0.7),)
    plan = plan_txt2img([CheckpointGroup("a", 6, style, "a fox")], negative="", settings=SETTINGS, base_seed=1,
                        family="sdxl", max_batch=4, accelerator=(lightning,))
    assert all(job.spec.loras == (*style, lightning) for job in plan.jobs)
    assert all(image.loras == style for image in plan.images)  # what the learning and refines see
