"""The GPU time model: its formula, and which prompts pay a checkpoint load."""

from __future__ import annotations

import pytest

from comfy.simulator import TimeModel
from comfy.simulator.timemodel import REFERENCE_PIXELS


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
