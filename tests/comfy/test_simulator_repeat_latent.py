"""RepeatLatentBatch: defined as ComfyUI 0.3.64 does, validated, and executed so img2img can batch."""

from __future__ import annotations

import io

import httpx
from PIL import Image

from comfy.models import GenerationSpec, RefineSource
from comfy.simulator import SimulatedComfy
from comfy.workflow import build_workflow
from tests.comfy.sim_fixtures import WsRecorder, http, sim, submit, txt2img_prompt  # noqa: F401

# ComfyUI 0.3.64 nodes.py: INPUT_TYPES, RETURN_TYPES, CATEGORY and its display name mapping.
EXPECTED_DEFINITION = {
    "input": {"required": {"samples": ["LATENT"], "amount": ["INT", {"default": 1, "min": 1, "max": 64}]}},
    "input_order": {"required": ["samples", "amount"]},
    "output": ["LATENT"], "output_is_list": [False], "output_name": ["LATENT"],
    "name": "RepeatLatentBatch", "display_name": "Repeat Latent Batch", "python_module": "nodes",
    "category": "latent/batch", "output_node": False,
}


def png(colour: tuple[int, int, int], size: int = 128) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, format="PNG")
    return buffer.getvalue()


async def upload(http: httpx.AsyncClient, data: bytes, name: str) -> str:
    response = await http.post("/upload/image", files={"image": (name, data, "image/png")})
    assert response.status_code == 200, response.text
    return response.json()["name"]


async def run_for_images(http: httpx.AsyncClient, sim: SimulatedComfy, prompt: dict, client: str) -> list[Image.Image]:
    async with WsRecorder(sim.url, client) as ws:
        prompt_id = await submit(http, prompt, client)
        await ws.wait_done(prompt_id)
        refs = (await ws.wait_type("executed", prompt_id))["data"]["output"]["images"]
    return [Image.open(io.BytesIO((await http.get("/view", params=ref)).content)).convert("RGB") for ref in refs]


def node_id(prompt: dict, class_type: str) -> str:
    return next(n for n, node in prompt.items() if node["class_type"] == class_type)


def refine_prompt(image_name: str, batch_size: int) -> dict:
    spec = GenerationSpec(checkpoint="dreamshaper_8.safetensors", positive="a red boat", negative="blurry", seed=5,
                          width=128, height=128, steps=3, cfg=7.0, batch_size=batch_size,
                          refine_from=RefineSource(b"uploaded separately", denoise=0.4))
    return build_workflow(spec, init_image_name=image_name)


async def test_object_info_defines_the_node_like_comfyui(http: httpx.AsyncClient) -> None:
    assert (await http.get("/object_info/RepeatLatentBatch")).json() == {"RepeatLatentBatch": EXPECTED_DEFINITION}
    assert (await http.get("/object_info")).json()["RepeatLatentBatch"] == EXPECTED_DEFINITION


async def test_img2img_batch_gives_one_picture_per_index_from_the_same_source(
        http: httpx.AsyncClient, sim: SimulatedComfy) -> None:
    name = await upload(http, png((0, 200, 0)), "green.png")
    prompt = refine_prompt(name, batch_size=3)
    assert prompt[node_id(prompt, "RepeatLatentBatch")]["inputs"]["amount"] == 3
    images = await run_for_images(http, sim, prompt, "r")
    assert [i.size for i in images] == [(128, 128)] * 3
    assert len({i.tobytes() for i in images}) == 3  # each batch index has its own noise
    assert sim.images_done == 3
    # The source shows through by 1 - denoise in every picture (bottom corner, below the caption).
    [plain] = await run_for_images(http, sim, refine_prompt(await upload(http, png((200, 0, 200)), "m.png"), 1), "p")
    greens = [image.getpixel((120, 120))[1] for image in images]
    assert all(green >= 0.6 * 200 * 0.9 for green in greens)
    assert plain.getpixel((120, 120))[1] < min(greens)


async def test_repeating_a_sampled_latent_repeats_its_picture(http: httpx.AsyncClient, sim: SimulatedComfy) -> None:
    prompt = txt2img_prompt(batch=1, size=64, steps=2, lora=None)
    decode, sampler = node_id(prompt, "VAEDecode"), node_id(prompt, "KSampler")
    prompt["99"] = {"class_type": "RepeatLatentBatch", "inputs": {"samples": [sampler, 0], "amount": 2}}
    prompt[decode]["inputs"]["samples"] = ["99", 0]
    first, second = await run_for_images(http, sim, prompt, "s")
    assert first.tobytes() == second.tobytes()


async def test_amount_is_validated_like_comfyui(http: httpx.AsyncClient) -> None:
    prompt = refine_prompt(await upload(http, png((0, 0, 0)), "black.png"), batch_size=65)
    response = await http.post("/prompt", json={"prompt": prompt})
    assert response.status_code == 400
    repeat = node_id(prompt, "RepeatLatentBatch")
    assert list(response.json()["node_errors"]) == [repeat]  # the sampler downstream is not listed
    errors = response.json()["node_errors"][repeat]["errors"]
    assert {e["type"] for e in errors} == {"value_bigger_than_max"}
    assert errors[0]["details"] == "amount"
    assert errors[0]["message"] == "Value 65 bigger than max of 64"
