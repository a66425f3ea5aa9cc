"""Shared helpers for the simulator tests: fixtures, a JSON shape comparer, a ws recorder.

Import the fixtures you use into a test module (`from tests.comfy.sim_fixtures import sim, http`).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import httpx
import pytest
import websockets

from comfy.simulator import Inventory, ModelFile, SimulatedComfy, TimeModel, load_inventory

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "comfy"
INSTANT = TimeModel(scale=0.0)
SLOW_STEPS = TimeModel(step_seconds=0.01, checkpoint_load={"sd15": 0.0, "sdxl": 0.0}, lora_change=0.0)


def fixture(name: str) -> Any:
    """A captured ComfyUI answer from tests/fixtures/comfy."""
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def captured_inventory() -> Inventory:
    """The checkpoints/LoRAs the captured server had when prompt_errors.json was recorded."""
    inventory = load_inventory()
    listed = fixture("models_checkpoints.json")["json"]
    checkpoints = {n: inventory.checkpoints[n] for n in listed if n in inventory.checkpoints}
    loras = {n: inventory.loras.get(n, ModelFile(n, "sd15")) for n in (
        "add_detail.safetensors", "anime_style_v2.safetensors", "cyberpunk_neon_xl.safetensors",
        "detailed_hair.safetensors", "fantasy_landscape.safetensors")}
    return Inventory(checkpoints, loras)


def type_name(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return repr(type(value).__name__)
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


def shape_diff(actual: Any, expected: Any, path: str = "$") -> list[str]:
    """Where `actual` differs from `expected` in keys or value types, recursively.

    Lists compare element-wise when the lengths match, else every element against the first
    expected one. ints and floats both count as numbers (JSON does not tell them apart); a
    captured null accepts any value (e.g. the CPU device's `index` is a number on a GPU).
    """
    if expected is not None and type_name(actual) != type_name(expected):
        return [f"{path}: {type_name(actual)} != {type_name(expected)}"]
    if isinstance(expected, dict):
        if set(actual) != set(expected):
            return [f"{path}: keys {sorted(actual)} != {sorted(expected)}"]
        return [d for key in expected for d in shape_diff(actual[key], expected[key], f"{path}.{key}")]
    if isinstance(expected, list) and expected and actual:
        pairs = zip(actual, expected) if len(actual) == len(expected) else ((a, expected[0]) for a in actual)
        return [d for i, (a, e) in enumerate(pairs) for d in shape_diff(a, e, f"{path}[{i}]")]
    return []


def assert_same_shape(actual: Any, expected: Any) -> None:
    differences = shape_diff(actual, expected)
    assert not differences, "\n".join(differences[:20])


def strip_key(value: Any, key: str) -> Any:
    """`value` without `key` anywhere (the capture stripped tooltips from node definitions)."""
    if isinstance(value, dict):
        return {k: strip_key(v, key) for k, v in value.items() if k != key}
    if isinstance(value, list):
        return [strip_key(v, key) for v in value]
    return value


async def start_sim(tmp_path: Path, **kwargs: Any) -> SimulatedComfy:
    kwargs.setdefault("time_model", INSTANT)
    server = SimulatedComfy(output_dir=tmp_path / "sim", **kwargs)
    await server.start()
    return server


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[SimulatedComfy]:
    """A started simulator with the default inventory, running instantly."""
    server = await start_sim(tmp_path)
    yield server
    await server.stop()


@pytest.fixture
async def http(sim: SimulatedComfy) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sim.url, timeout=10) as client:
        yield client


class WsRecorder:
    """A ws client that records every message; tests await the message they need."""

    def __init__(self, url: str, client_id: str | None = None, feature_flags: dict[str, Any] | None = None) -> None:
        query = f"?clientId={client_id}" if client_id else ""
        self.url = url.replace("http://", "ws://") + "/ws" + query
        self.feature_flags = feature_flags
        self.messages: list[dict[str, Any] | bytes] = []
        self._arrived = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()

    async def __aenter__(self) -> WsRecorder:
        self.socket = await websockets.connect(self.url, max_size=None)
        if self.feature_flags is not None:
            await self.socket.send(json.dumps({"type": "feature_flags", "data": self.feature_flags}))
        self._task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.socket.close()
        if self._task:
            self._task.cancel()

    async def _read(self) -> None:
        try:
            async for raw in self.socket:
                async with self._arrived:
                    self.messages.append(raw if isinstance(raw, bytes) else json.loads(raw))
                    self._arrived.notify_all()
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed.set()
            async with self._arrived:
                self._arrived.notify_all()

    async def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10) -> dict[str, Any]:
        """The first JSON message matching `predicate` (already received or still to come)."""
        async def find() -> dict[str, Any]:
            async with self._arrived:
                while True:
                    for message in self.json():
                        if predicate(message):
                            return message
                    if self.closed.is_set():
                        raise AssertionError("socket closed before the expected message")
                    await self._arrived.wait()
        return await asyncio.wait_for(find(), timeout)

    async def wait_count(self, count: int) -> None:
        """Until at least `count` JSON messages arrived."""
        await self.wait_for(lambda m: len(self.json()) >= count)

    async def wait_type(self, type_: str, prompt_id: str | None = None, **data: Any) -> dict[str, Any]:
        return await self.wait_for(lambda m: m["type"] == type_
                                   and (prompt_id is None or m["data"].get("prompt_id") == prompt_id)
                                   and all(m["data"].get(k) == v for k, v in data.items()))

    async def wait_done(self, prompt_id: str) -> dict[str, Any]:
        """The `executing` node=None that ends a prompt for its client."""
        return await self.wait_type("executing", prompt_id, node=None)

    def json(self) -> list[dict[str, Any]]:
        return [m for m in self.messages if isinstance(m, dict)]

    def types(self) -> list[str]:
        return [m["type"] for m in self.json()]

    def binary(self) -> list[bytes]:
        return [m for m in self.messages if isinstance(m, bytes)]


def captured_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ws JSON messages of a fixture sequence (markers and binary notes left out)."""
    return [m["json"] for m in messages if "json" in m]


def assert_sequence_like(recorded: list[dict[str, Any]], captured: list[dict[str, Any]]) -> None:
    """Same message types in the same order, each message's data of the same shape."""
    assert [m["type"] for m in recorded] == [m["type"] for m in captured]
    for mine, theirs in zip(recorded, captured):
        assert_same_shape(mine["data"], theirs["data"])


def emptyimage_prompt(color: int = 16744448, prefix: str = "fixture/emptyimage") -> dict[str, Any]:
    """The captured EmptyImage → SaveImage graph (ws_sequence_emptyimage.json)."""
    prompt = fixture("ws_sequence_emptyimage.json")["prompt"]
    prompt["1"]["inputs"]["color"] = color
    prompt["2"]["inputs"]["filename_prefix"] = prefix
    return prompt


def txt2img_prompt(checkpoint: str = "dreamshaper_8.safetensors", lora: str | None = "anime_style_v2.safetensors",
                   seed: int = 42, steps: int = 4, batch: int = 2, size: int = 64, prefix: str = "tiny_txt2img",
                   text: str = "a photo of a cat, masterpiece") -> dict[str, Any]:
    """The captured workflow_txt2img_lora.json graph with our model names substituted."""
    prompt = fixture("workflow_txt2img_lora.json")
    prompt["1"]["inputs"]["ckpt_name"] = checkpoint
    prompt["3"]["inputs"]["text"] = text
    prompt["5"]["inputs"].update(width=size, height=size, batch_size=batch)
    prompt["6"]["inputs"].update(seed=seed, steps=steps)
    prompt["8"]["inputs"]["filename_prefix"] = prefix
    if lora is None:
        del prompt["2"]
        for node in prompt.values():
            for name, value in node["inputs"].items():
                if isinstance(value, list) and value[0] == "2":
                    node["inputs"][name] = ["1", value[1]]
    else:
        prompt["2"]["inputs"]["lora_name"] = lora
    return prompt


async def submit(http: httpx.AsyncClient, prompt: dict[str, Any], client_id: str | None = None,
                 **extra: Any) -> str:
    body: dict[str, Any] = {"prompt": prompt, **extra}
    if client_id is not None:
        body["client_id"] = client_id
    response = await http.post("/prompt", json=body)
    assert response.status_code == 200, response.text
    return response.json()["prompt_id"]
