"""Renders are deterministic and show what was asked for; file names follow ComfyUI."""

from __future__ import annotations

import io

import httpx
from PIL import Image

from comfy.simulator import SimulatedComfy
from comfy.simulator.render import SampleRecipe, png_bytes, render_sample
from tests.comfy.sim_fixtures import WsRecorder, http, sim, submit, txt2img_prompt  # noqa: F401

RECIPE = SampleRecipe("dreamshaper_8.safetensors", (("anime_style_v2.safetensors", 0.8),), "a cat", "blurry",
                      42, 20, 7.0, "euler", "normal", 1.0)


def test_same_recipe_gives_identical_png_bytes() -> None:
    first = png_bytes(render_sample(RECIPE, 0, 512, 512), {"prompt": "{}"})
    second = png_bytes(render_sample(RECIPE, 0, 512, 512), {"prompt": "{}"})
    assert first == second


def test_checkpoint_seed_and_batch_index_change_the_picture() -> None:
    base = render_sample(RECIPE, 0, 128, 128).tobytes()
    variants = [render_sample(RECIPE, 1, 128, 128),
                render_sample(SampleRecipe(**{**RECIPE.__dict__, "seed": 43}), 0, 128, 128),
                render_sample(SampleRecipe(**{**RECIPE.__dict__, "checkpoint": "realvisxlV40.safetensors"}), 0, 128, 128)]
    assert all(v.tobytes() != base for v in variants)


def test_background_colour_differs_between_checkpoints() -> None:
    """The part below the caption band differs, so drafts are told apart at a glance."""
    other = SampleRecipe(**{**RECIPE.__dict__, "checkpoint": "juggernautXL_v9.safetensors"})
    assert render_sample(RECIPE, 0, 256, 256).getpixel((128, 250)) != render_sample(other, 0, 256, 256).getpixel((128, 250))


async def fetch_images(http: httpx.AsyncClient, sim: SimulatedComfy, prompt: dict, client: str) -> list[bytes]:
    async with WsRecorder(sim.url, client) as ws:
        prompt_id = await submit(http, prompt, client)
        await ws.wait_done(prompt_id)
        images = (await ws.wait_type("executed", prompt_id))["data"]["output"]["images"]
    return [(await http.get("/view", params=image)).content for image in images]


async def test_resubmitted_graph_renders_byte_identical_images(http: httpx.AsyncClient, sim: SimulatedComfy) -> None:
    first = await fetch_images(http, sim, txt2img_prompt(seed=7, size=128), "a")
    await http.post("/free", json={"free_memory": True})  # no cache: it really renders again
    second = await fetch_images(http, sim, txt2img_prompt(seed=7, size=128), "b")
    assert first == second and first[0] != first[1]
    prompt_chunk = Image.open(io.BytesIO(first[0])).text["prompt"]
    assert '"seed": 7' in prompt_chunk


async def test_subfolder_lora_and_prefix_work_end_to_end(http: httpx.AsyncClient, sim: SimulatedComfy) -> None:
    prompt = txt2img_prompt("realvisxlV40.safetensors", "xl/film_grain_xl.safetensors", prefix="drafts/run1/img")
    async with WsRecorder(sim.url, "s") as ws:
        prompt_id = await submit(http, prompt, "s")
        await ws.wait_done(prompt_id)
        images = (await ws.wait_type("executed", prompt_id))["data"]["output"]["images"]
    assert images[0] == {"filename": "img_00001_.png", "subfolder": "drafts/run1", "type": "output"}
    assert (await http.get("/view", params=images[1])).status_code == 200
    assert sim.env.gpu.loras == (("xl/film_grain_xl.safetensors", 1.0),)


async def test_file_counter_continues_from_existing_files(http: httpx.AsyncClient, sim: SimulatedComfy) -> None:
    folder = sim.files.root / "output"
    (folder / "draft_00041_.png").write_bytes(b"x")
    async with WsRecorder(sim.url, "c") as ws:
        prompt_id = await submit(http, txt2img_prompt(prefix="draft", batch=1), "c")
        images = (await ws.wait_type("executed", prompt_id))["data"]["output"]["images"]
    assert images[0]["filename"] == "draft_00042_.png"
