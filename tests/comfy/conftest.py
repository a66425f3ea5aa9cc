"""Shared helpers for the comfy client / workflow / pool tests.

`ReplayComfy` is a tiny aiohttp server that answers with responses captured from a real ComfyUI
0.3.64 (tests/fixtures/comfy) and, after each POST /prompt, replays a captured ws message sequence
to the submitting socket with the captured prompt id swapped for the submitted one. It exists to
pin the client to the *real* protocol byte for byte; behaviour under load and faults is tested
against the simulator.
"""

from __future__ import annotations

import asyncio
import io
import json
import struct
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from PIL import Image, PngImagePlugin

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "comfy"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF fake preview"


def png_named(text: str) -> bytes:
    """A small real PNG carrying `text` in a tEXt chunk, so each served file is recognisable."""
    info = PngImagePlugin.PngInfo()
    info.add_text("name", text)
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(out, format="PNG", pnginfo=info)
    return out.getvalue()


PNG = png_named("fake image")


def fixture(name: str) -> Any:
    """A captured fixture file, parsed."""
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def ws_script(messages: list[dict[str, Any]]) -> list[dict[str, Any] | bytes]:
    """A captured ws sequence as frames to replay: JSON messages (minus the initial status, sent on
    connect) and binary preview frames rebuilt from their captured headers."""
    frames: list[dict[str, Any] | bytes] = []
    for entry in messages:
        if "json" in entry:
            if entry["json"]["type"] == "status" and "sid" in entry["json"]["data"]:
                continue
            frames.append(entry["json"])
        elif entry.get("binary"):
            if entry["event_type_u32be"] == 4:
                meta = json.dumps(entry["metadata"]).encode()
                frames.append(struct.pack(">II", 4, len(meta)) + meta + JPEG)
            else:
                frames.append(struct.pack(">II", 1, entry["image_format_u32be"]) + JPEG)
    return frames


Handler = Callable[[web.Request], "web.StreamResponse | asyncio.Future[web.StreamResponse]"]


@dataclass
class ReplayComfy:
    """Replays captured answers; `routes[(method, path)]` overrides or adds any answer."""

    captured_prompt_id: str = ""
    script: list[dict[str, Any] | bytes] = field(default_factory=list)
    drop_after: int | None = None  # close the socket after this many replayed frames
    routes: dict[tuple[str, str], Handler] = field(default_factory=dict)
    posted: list[dict[str, Any]] = field(default_factory=list)
    feature_flags: list[dict[str, Any]] = field(default_factory=list)
    ws_extensions: list[str | None] = field(default_factory=list)  # each handshake's offer, as sent
    sockets: dict[str, web.WebSocketResponse] = field(default_factory=dict)
    url: str = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        for ws in list(self.sockets.values()):
            await ws.close()
        await self._runner.cleanup()

    def reply_json(self, method: str, path: str, body: Any, status: int = 200) -> None:
        self.routes[(method, path)] = lambda _r: web.json_response(body, status=status)

    def reply_capture(self, method: str, path: str, capture: dict[str, Any]) -> None:
        """Answer exactly as captured: status, content type and JSON or text body."""
        def handler(_request: web.Request) -> web.Response:
            if "json" in capture:
                return web.json_response(capture["json"], status=capture["status"])
            return web.Response(status=capture["status"], text=capture.get("text", ""),
                                content_type=(capture.get("content_type") or "text/plain").split(";")[0])
        self.routes[(method, path)] = handler

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path == "/ws":
            return await self._ws(request)
        handler = self.routes.get((request.method, path))
        if handler is not None:
            result = handler(request)
            return await result if asyncio.iscoroutine(result) else result  # type: ignore[return-value]
        if (request.method, path) == ("POST", "/prompt"):
            return await self._post_prompt(request)
        return web.Response(status=404)

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        self.ws_extensions.append(request.headers.get("Sec-WebSocket-Extensions"))
        ws = web.WebSocketResponse()  # compresses when offered, as ComfyUI's own socket does
        await ws.prepare(request)
        sid = request.query.get("clientId") or uuid.uuid4().hex
        self.sockets[sid] = ws
        await ws.send_json({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": sid}})
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                self.feature_flags.append(json.loads(msg.data))
        self.sockets.pop(sid, None)
        return ws

    async def _post_prompt(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.posted.append(body)
        prompt_id = body.get("prompt_id") or str(uuid.uuid4())
        ws = self.sockets.get(body.get("client_id", ""))
        if ws is not None:
            asyncio.get_running_loop().create_task(self._replay(ws, prompt_id))
        return web.json_response({"prompt_id": prompt_id, "number": len(self.posted), "node_errors": {}})

    async def _replay(self, ws: web.WebSocketResponse, prompt_id: str) -> None:
        for index, frame in enumerate(self.script):
            if self.drop_after is not None and index >= self.drop_after:
                await ws.close()
                return
            if isinstance(frame, bytes):
                await ws.send_bytes(frame.replace(self.captured_prompt_id.encode(), prompt_id.encode()))
            else:
                await ws.send_str(json.dumps(frame).replace(self.captured_prompt_id, prompt_id))


@pytest.fixture
async def replay() -> AsyncIterator[ReplayComfy]:
    server = ReplayComfy()
    await server.start()
    yield server
    await server.stop()


# ---------------------------------------------------------------------------- simulator helpers

SD15 = ("alpha.safetensors", "beta.safetensors", "gamma.safetensors")
LORA = "style/ink.safetensors"
LORA_METADATA = {"ss_base_model_version": "sd_v1", "ss_tag_frequency": '{"5_ink": {"ink": 12}}'}
CHECKPOINT_METADATA = {"modelspec.architecture": "stable-diffusion-v1", "modelspec.title": "Alpha"}
TIME_SCALE = 0.02  # a 20-step 512² image takes ~20 ms, a checkpoint load ~60 ms


def sim_inventory(checkpoints: tuple[str, ...] = SD15) -> Any:
    """A small sd15 inventory for the simulator (explicit, so tests do not depend on assets/)."""
    from comfy.simulator import Inventory, ModelFile

    return Inventory(
        checkpoints={name: ModelFile(name, "sd15", metadata=dict(CHECKPOINT_METADATA) if name == SD15[0] else None)
                     for name in checkpoints},
        loras={LORA: ModelFile(LORA, "sd15", metadata=dict(LORA_METADATA)),
               "plain.safetensors": ModelFile("plain.safetensors", "sd15")},
    )


async def start_sims(inventories: list[tuple[str, ...]], scale: float = TIME_SCALE) -> list[Any]:
    """Start one simulated server per inventory (names sim-gpu-0, sim-gpu-1, ...)."""
    from comfy.simulator import SimulatedComfy, TimeModel

    sims = [SimulatedComfy(sim_inventory(ckpts), name=f"sim-gpu-{i}", time_model=TimeModel(scale=scale))
            for i, ckpts in enumerate(inventories)]
    for sim in sims:
        await sim.start()
    return sims


async def stop_sims(sims: list[Any]) -> None:
    for sim in sims:
        await sim.stop()
