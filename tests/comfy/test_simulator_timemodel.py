"""The GPU time model: its formula, and which prompts pay a checkpoint load."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import httpx
import pytest

from comfy.simulator import TimeModel
from comfy.simulator.__main__ import gpu_factors, parse_args
from comfy.simulator.timemodel import REFERENCE_PIXELS
from tests.comfy.sim_fixtures import WsRecorder, start_sim, submit, txt2img_prompt


def test_load_costs_per_family_only_when_something_changed() -> None:
    model = TimeModel()
    assert model.load_seconds("sd15", True, False) == 3.0
    assert model.load_seconds("sdxl", True, True) == pytest.approx(6.3)
    assert model.load_seconds("sdxl", False, True) == pytest.approx(0.3)
    assert model.load_seconds("sdxl", False, False) == 0.0


def test_step_cost_scales_with_pixels_and_batch() -> None:
    model = TimeModel(step_seconds=0.05)
    assert model.step_seconds_for(512, 512, 1) == pytest.approx(0.05)
    assert model.step_seconds_for(1024, 1024, 1) == pytest.approx(0.05 * 1024 * 1024 / REFERENCE_PIXELS)
    assert model.step_seconds_for(512, 512, 4) == pytest.approx(0.05 * 4 ** 0.8)
    assert model.step_seconds_for(512, 512, 4) < 4 * model.step_seconds_for(512, 512, 1)


def test_scale_zero_is_instant_and_scaled_multiplies() -> None:
    assert TimeModel(scale=0).load_seconds("sdxl", True, True) == 0
    assert TimeModel().scaled(0.5).step_seconds_for(512, 512, 1) == pytest.approx(0.025)


def test_gpu_factor_slows_gpu_work_but_not_the_per_prompt_overhead() -> None:
    slow = TimeModel(gpu_factor=1.5, prompt_overhead=0.4, scale=0.5)
    nominal = TimeModel(prompt_overhead=0.4, scale=0.5)
    assert slow.load_seconds("sd15", True, False) == pytest.approx(1.5 * nominal.load_seconds("sd15", True, False))
    assert slow.step_seconds_for(512, 512, 2) == pytest.approx(1.5 * nominal.step_seconds_for(512, 512, 2))
    assert slow.decode_seconds_for(512, 512, 2) == pytest.approx(1.5 * nominal.decode_seconds_for(512, 512, 2))
    assert slow.prompt_seconds() == nominal.prompt_seconds() == pytest.approx(0.2)
    assert TimeModel().prompt_seconds() == 0.0  # off unless asked for


async def test_every_executed_prompt_pays_the_overhead(tmp_path: Path) -> None:
    """Two tiny prompts on an otherwise instant GPU take at least two overheads, one each."""
    overhead = 0.15
    server = await start_sim(tmp_path, time_model=TimeModel(scale=1.0, prompt_overhead=overhead, step_seconds=0.0,
                                                            decode_seconds=0.0, lora_change=0.0,
                                                            checkpoint_load={"sd15": 0.0, "sdxl": 0.0}))
    try:
        async with httpx.AsyncClient(base_url=server.url) as http, WsRecorder(server.url, "o") as ws:
            loop = asyncio.get_running_loop()
            started = loop.time()
            for seed in (1, 2):
                await ws.wait_done(await submit(http, txt2img_prompt(seed=seed), "o"))
            assert loop.time() - started >= 2 * overhead
    finally:
        await server.close()


def test_cli_sets_each_gpus_factor_and_the_overhead() -> None:
    args = parse_args(["--gpus", "3", "--gpu-factors", "1,1.5", "--prompt-overhead", "0.4"])
    assert args.gpu_factors == [1.0, 1.5] and args.prompt_overhead == 0.4
    with pytest.raises(argparse.ArgumentTypeError):
        gpu_factors("1,-2")


def test_a_step_at_cfg_one_costs_half_as_comfyui_skips_the_negative_pass() -> None:
    model = TimeModel()
    assert model.step_seconds_for(512, 512, 1, cfg=1.0) == pytest.approx(0.5 * model.step_seconds_for(512, 512, 1, cfg=7.0))
    assert model.step_seconds_for(512, 512, 1) == model.step_seconds_for(512, 512, 1, cfg=7.0)
