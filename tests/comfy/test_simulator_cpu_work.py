"""The simulator's own CPU work (rendering, PNG encoding) runs within the modelled GPU time instead
of adding to it: pictures are made while the sampler's steps run, saved as they would be."""

from __future__ import annotations

import asyncio
import io
import threading
from pathlib import Path

import httpx
import pytest
from PIL import Image

from comfy.simulator import TimeModel
from comfy.simulator import executor
from tests.comfy.sim_fixtures import WsRecorder, start_sim, submit, txt2img_prompt

# Steps that take far longer than any test waits: a prompt stays in its sampler until interrupted.
ENDLESS_STEPS = TimeModel(step_seconds=1000.0, checkpoint_load={"sd15": 0.0, "sdxl": 0.0}, lora_change=0.0)


class Encodes:
    """The sizes of the PNGs the executor encodes (in worker threads), in order."""

    def __init__(self) -> None:
        self.sizes: list[tuple[int, int]] = []
        self._changed = threading.Condition()

    def add(self, size: tuple[int, int]) -> None:
        with self._changed:
            self.sizes.append(size)
            self._changed.notify_all()

    async def reach(self, count: int) -> bool:
        def wait() -> bool:
            with self._changed:
                return self._changed.wait_for(lambda: len(self.sizes) >= count, timeout=10)
        return await asyncio.to_thread(wait)


@pytest.fixture
def encodes(monkeypatch: pytest.MonkeyPatch) -> Encodes:
    seen = Encodes()
    original = executor.png_bytes

    def counting(image: Image.Image, chunks: dict[str, str]) -> bytes:
        data = original(image, chunks)
        seen.add(image.size)
        return data
    monkeypatch.setattr(executor, "png_bytes", counting)
    return seen


async def test_pictures_are_encoded_while_the_sampler_steps_run(tmp_path: Path, encodes: Encodes) -> None:
    server = await start_sim(tmp_path, time_model=ENDLESS_STEPS)
    try:
        async with httpx.AsyncClient(base_url=server.url) as http, WsRecorder(server.url, "c") as ws:
            prompt_id = await submit(http, txt2img_prompt(batch=2, size=64), "c")
            await ws.wait_type("executing", prompt_id, node="6")  # the KSampler
            assert await encodes.reach(2)
            assert encodes.sizes == [(64, 64), (64, 64)]
            assert server.executor.current_node == "6"  # still sampling: its steps never end
            assert "executed" not in ws.types()
            await http.post("/interrupt")
            await ws.wait_type("execution_interrupted", prompt_id)
    finally:
        await server.close()


async def test_each_saved_picture_is_encoded_once_and_a_changed_one_as_changed(tmp_path: Path,
                                                                              encodes: Encodes) -> None:
    """Pictures encoded ahead are saved as they are; a picture scaled after the decode is encoded
    at its own size when saved, and nothing is encoded twice."""
    prompt = txt2img_prompt(lora=None, batch=2, size=64)
    prompt["20"] = {"class_type": "ImageScaleBy", "inputs": {"image": ["7", 0], "upscale_method": "nearest-exact",
                                                              "scale_by": 0.5}}
    prompt["21"] = {"class_type": "SaveImage", "inputs": {"images": ["20", 0], "filename_prefix": "half"}}
    server = await start_sim(tmp_path)
    try:
        async with httpx.AsyncClient(base_url=server.url) as http, WsRecorder(server.url, "c") as ws:
            prompt_id = await submit(http, prompt, "c")
            await ws.wait_done(prompt_id)
            saved = [m["data"]["output"]["images"] for m in ws.json() if m["type"] == "executed"]
            sizes = []
            for images in saved:
                for image in images:
                    png = (await http.get("/view", params=image)).content
                    sizes.append(Image.open(io.BytesIO(png)).size)
    finally:
        await server.close()
    assert sorted(sizes) == sorted(encodes.sizes) == [(32, 32), (32, 32), (64, 64), (64, 64)]
