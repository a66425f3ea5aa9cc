"""The per-server cost model and its learner (comfy/costs.py): pure, no clock."""

from __future__ import annotations

from dataclasses import replace

import pytest

from comfy.costs import (CFG_ONE_WORK, MAX_LOAD, MAX_OVERHEAD, WINDOW, CostLearner, CostModel, Observation, changes,
                         group_key, work_units)
from comfy.models import GenerationSpec, LoraSpec, PoolJob
from comfy.simulator import TimeModel

NOMINAL = CostModel()
# a real server: slower steps, a big fixed overhead, a weaker batch speed-up, slow loads
TRUE = CostModel(checkpoint_load={"sd15": 7.0, "sdxl": 6.0}, lora_change=0.3, prompt_overhead=2.5,
                 step_seconds=0.08, batch_exponent=0.9)


def job(images: int, side: int = 512, steps: int = 20, checkpoint: str = "A", loras: tuple[LoraSpec, ...] = (),
        cfg: float = 7.0) -> PoolJob:
    return PoolJob(f"{checkpoint}{images}", GenerationSpec(checkpoint=checkpoint, positive="p", negative="n", seed=1,
                                                           width=side, height=side, steps=steps, cfg=cfg,
                                                           batch_size=images, loras=loras))


def learn(runs: list[tuple[PoolJob, tuple | None, float]], prior: CostModel = NOMINAL) -> CostLearner:
    learner = CostLearner(prior=prior)
    for each, loaded, seconds in runs:
        learner = learner.observed(Observation.of(each, loaded, seconds))
    return learner


def truly(each: PoolJob, loaded: tuple | None) -> tuple[PoolJob, tuple | None, float]:
    return each, loaded, TRUE.job_seconds(each, loaded)


def mixed_runs() -> list[tuple[PoolJob, tuple | None, float]]:
    """A fresh server: one load, then jobs of several sizes without loads."""
    held = ("A", ())
    return [truly(job(1), None)] + [truly(job(n, side, steps), held)
                                    for n, side, steps in ((3, 512, 20), (1, 512, 20), (4, 512, 12), (2, 768, 12))]


def test_the_terms_that_vary_independently_are_each_recovered() -> None:
    model = learn(mixed_runs()).model
    assert model.prompt_overhead == pytest.approx(TRUE.prompt_overhead, rel=1e-6)
    assert model.step_seconds == pytest.approx(TRUE.step_seconds, rel=1e-6)
    assert model.batch_exponent == pytest.approx(TRUE.batch_exponent)
    assert model.checkpoint_load["sd15"] == pytest.approx(TRUE.checkpoint_load["sd15"], rel=1e-6)
    assert model.checkpoint_load["sdxl"] == NOMINAL.checkpoint_load["sdxl"]  # never seen: the prior's


def test_small_jobs_that_take_seconds_do_not_make_the_server_look_hopeless() -> None:
    """Issue 10: 64x64, 4 steps, nominally milliseconds, took seconds. One speed factor learnt from
    that (measured / nominal) was ~1000x and priced the next load + batch at hours; the terms
    price it close to what it takes."""
    held = ("A", ())
    tiny = [truly(job(n, side=64, steps=4), held) for n in (1, 2, 3, 4, 2, 1)]
    learner = learn(tiny)
    factor = tiny[0][2] / NOMINAL.sample_seconds(job(1, side=64, steps=4))  # the old model: sampling only
    assert factor > 100  # what a single factor would have learnt
    big = job(4, side=512, steps=20, checkpoint="B")
    estimate, actual = learner.model.job_seconds(big, held), TRUE.job_seconds(big, held)
    assert actual / 2 < estimate < 2 * actual


def test_one_kind_of_job_is_priced_at_what_it_took() -> None:
    held = ("A", ())
    learner = learn([truly(job(4), held)] * 3)
    assert learner.model.job_seconds(job(4), held) == pytest.approx(TRUE.job_seconds(job(4), held))
    ratio = learner.model.prompt_overhead / learner.model.step_seconds  # the prior's split, scaled alike
    assert ratio == pytest.approx(NOMINAL.prompt_overhead / NOMINAL.step_seconds)


def test_an_outlier_does_not_move_the_estimates() -> None:
    runs = mixed_runs() + [truly(job(n), ("A", ())) for n in (1, 2, 3, 4, 2, 3)]
    clean = learn(runs).model
    spoiled = learn(runs[:-1] + [(runs[-1][0], runs[-1][1], 50 * runs[-1][2])]).model  # a 50x stall
    for each in (job(1), job(4)):
        assert spoiled.job_seconds(each, ("A", ())) == pytest.approx(clean.job_seconds(each, ("A", ())), rel=0.05)


def test_estimates_stay_bounded() -> None:
    absurd = learn([(job(1), None, 1e9), (job(1), ("A", ()), 1e9), (job(4), ("A", ()), 2e9)]).model
    assert absurd.prompt_overhead <= MAX_OVERHEAD and absurd.checkpoint_load["sd15"] <= MAX_LOAD
    assert absurd.step_seconds <= 100 * NOMINAL.step_seconds
    instant = learn([(job(1), None, 0.0), (job(1), ("A", ()), 0.0), (job(4), ("A", ()), 0.0)]).model
    assert instant.job_seconds(job(4), None) >= 0.0 and instant.step_seconds > 0


def test_only_the_newest_prompts_count() -> None:
    held = ("A", ())
    old = [(job(n), held, 100.0 * n) for n in (1, 2, 3, 4)] * WINDOW
    new = [truly(job(n), held) for n in (1, 2, 3, 4)] * (WINDOW // 4)
    model = learn(old + new).model
    assert model.job_seconds(job(3), held) == pytest.approx(TRUE.job_seconds(job(3), held), rel=1e-6)


def test_what_a_job_has_to_load() -> None:
    style = (LoraSpec("s.safetensors", 0.5),)
    assert changes(job(1), None) == (True, False)  # first prompt, no LoRA: nothing to unload
    assert changes(job(1, loras=style), None) == (True, True)
    assert changes(job(1), group_key(job(1, loras=style))) == (False, True)
    assert changes(job(1, checkpoint="B"), ("A", ())) == (True, False)
    assert changes(job(2), ("A", ())) == (False, False)


def test_a_cost_model_differs_when_one_term_moves_past_the_tolerance() -> None:
    base = CostModel()
    assert not base.differs(base.scaled(1.09), 0.1)
    assert base.differs(base.scaled(1.2), 0.1)
    assert base.differs(replace(base, checkpoint_load={**base.checkpoint_load, "sdxl": 7.0}), 0.1)
    assert base.differs(replace(base, batch_exponent=0.9), 0.1)
    assert base.differs(replace(base, checkpoint_load={"sd15": 3.0}), 0.1)


def test_a_step_at_cfg_one_is_half_the_work_so_fast_drafts_and_full_jobs_fit_one_line() -> None:
    """Lightning drafts (4 steps, cfg 1) and standard refines (cfg 7) on one server whose GPU skips
    the negative pass at cfg 1, as ComfyUI does (the simulator's time model): what the learner
    fits from both prices either kind at what it takes."""
    assert work_units(job(1, steps=4, cfg=1.0)) == pytest.approx(CFG_ONE_WORK * work_units(job(1, steps=4)))
    gpu = TimeModel(prompt_overhead=0.5, decode_seconds=0.0)
    held = ("A", ())

    def took(each: PoolJob) -> tuple[PoolJob, tuple, float]:
        spec = each.spec
        return each, held, gpu.txt2img_seconds("sd15", spec.steps, spec.width, spec.height, spec.batch_size, False,
                                               False, spec.cfg)
    learner = learn([took(each) for each in (job(1, 1024, 4, cfg=1.0), job(4, 1024, 4, cfg=1.0), job(2, 1024, 25),
                                             job(3, 1024, 4, cfg=1.0), job(4, 1024, 25))])
    for each in (job(2, 1024, 4, cfg=1.0), job(1, 1024, 25)):
        assert learner.model.job_seconds(each, held) == pytest.approx(took(each)[2], rel=0.02)
