"""The cell planner: which (checkpoint, LoRA set, CFG) cells a batch fills, never more images than asked."""

from __future__ import annotations

import numpy as np

from draftgrid.cell_planner import CellOptions, plan_cells
from draftgrid.planning import RenderSettings, plan_txt2img
from learning.models import ArmStat, LoraChoice
from learning.recommend import combinations as combos

A = LoraChoice("a.safetensors", 0.8, 0.9, trigger_word="style a")
B = LoraChoice("b.safetensors", 0.6, 0.7)
MINE = LoraChoice("mine.safetensors", 0.9, 1.0, explicit=True)
SETS = ((A,), (A, B), ())
SETTINGS = RenderSettings(width=512, height=512, steps=12, cfg=7.0, sampler_name="euler", scheduler="normal")


def _options(set_evidence: dict[int, ArmStat], cfgs: tuple[float, ...] = (7.0, 5.0, 9.0)) -> CellOptions:
    arms = combos.combination_arms("sd15", [tuple((c.name, c.strength) for c in s) for s in SETS])
    found = {("cat", arms[i]): stat for i, stat in set_evidence.items()}
    posterior = combos.posterior_for(["cat"], arms, found, ArmStat(0, 0))
    cfg_posteriors = {c: combos.posterior_for(["cat"], combos.cfg_arms(c, cfgs), {}, ArmStat(0, 0))
                      for c in ("ckA", "ckB")} if cfgs else {}
    return CellOptions((MINE,), SETS, posterior, cfgs, cfg_posteriors)


def test_explore_cells_sum_to_the_allocation_and_keep_explicit_loras() -> None:
    allocation = {"ckA": 7, "ckB": 5}
    groups = plan_cells(allocation, _options({}), "a cat", explore=True, rng=np.random.default_rng(1))
    per_checkpoint: dict[str, int] = {}
    for group in groups:
        per_checkpoint[group.checkpoint] = per_checkpoint.get(group.checkpoint, 0) + group.count
        assert group.loras[0].name == MINE.name  # the user's tag in every cell
        assert group.cfg in (7.0, 5.0, 9.0)
    assert per_checkpoint == allocation
    assert len({(g.loras, g.cfg) for g in groups}) > 1  # Explore spreads


def test_quick_gives_every_image_the_best_set_with_its_trigger() -> None:
    groups = plan_cells({"ckA": 6}, _options({0: ArmStat(30, 3), 1: ArmStat(30, 3), 2: ArmStat(30, 25)}), "a cat",
                        explore=False, rng=np.random.default_rng(1))
    assert len(groups) == 1 and groups[0].count == 6
    assert [lora.name for lora in groups[0].loras] == [MINE.name]  # "none" of the automatic ones
    best_a = plan_cells({"ckA": 2}, _options({0: ArmStat(30, 25)}), "a cat", explore=False,
                        rng=np.random.default_rng(1))
    assert best_a[0].positive == "a cat, style a"


def test_a_user_cfg_leaves_cells_on_the_batch_cfg() -> None:
    groups = plan_cells({"ckA": 4}, _options({}, cfgs=()), "a cat", explore=True, rng=np.random.default_rng(2))
    assert {g.cfg for g in groups} == {None}
    plan = plan_txt2img(groups, negative="", settings=SETTINGS, base_seed=10, family="sd15")
    assert {image.settings.cfg for image in plan.images} == {7.0}


def test_cells_of_one_checkpoint_share_seeds_chunk_by_chunk() -> None:
    groups = plan_cells({"ckA": 12}, _options({}), "a cat", explore=True, rng=np.random.default_rng(3))
    plan = plan_txt2img(groups, negative="", settings=SETTINGS, base_seed=100, family="sd15")
    assert len(plan.images) == 12
    assert {image.seed for image in plan.images} <= {100, 101, 102}  # chunk k of every cell: base + k
    first_chunks = {job.spec.seed for job in plan.jobs}
    assert len(groups) > 1 and 100 in first_chunks  # every cell starts on the same seed
