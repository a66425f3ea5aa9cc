"""A hostile ComfyUI server (aiohttp) for the reliability tests.

It speaks just enough of ComfyUI's protocol to be added to the app as a `--comfy` URL — health
(`/system_stats`, `/queue`), inventory (`/object_info/{node}`, copied from a healthy server so
the app's pools place jobs on it), `/prompt`, `/ws`, `/history`, `/view`, `/upload/image` — and
then misbehaves in one chosen way (`Misbehaviour`). It records every workflow it was sent.

Everything big is produced lazily: the 200 MB image is one reused 1 MB chunk written 200 times,
and the decompression bomb is a PNG that *declares* 30 000 × 30 000 pixels in ~100 KB, so the
double itself never holds the sizes it claims.
"""

from __future__ import annotations

import asyncio
import functools
import io
import json
import struct
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import Future
from enum import Enum
from typing import Any

from aiohttp import WSMsgType, web
from PIL import Image

BIG_BYTES = 200 * 1024 * 1024
CHUNK = b"\0" * (1024 * 1024)
BOMB_SIDE = 30_000


class Misbehaviour(str, Enum):
    """One way to be a bad ComfyUI server; the value names it in test ids."""

    TRAVERSAL_NAMES = "executed names with .. and absolute paths"
    TRAVERSAL_HISTORY = "socket drops, /history names escape"
    MISSING_FIELDS = "executed/progress messages missing fields or of the wrong type"
    WRONG_JSON = "non-JSON and wrongly shaped answers to /prompt"
    HUGE_IMAGE = "a 200 MB /view stream without Content-Length"
    HUGE_DECLARED = "a /view answer declaring 200 MB"
    DECOMPRESSION_BOMB = "a PNG declaring 30000x30000 pixels"
    NOT_A_PNG = "HTML instead of PNG bytes"
    JUNK_WEBSOCKET = "an endless stream of junk on the WebSocket"
    BAD_PREVIEWS = "preview frames with wrong lengths and bomb images"
    GARBAGE_HEALTH = "system_stats, queue and object_info of the wrong shape"
    FEWER_IMAGES = "one image fewer than the batch size"
    DUPLICATE_IMAGES = "every image twice, plus one past the batch size"


def png_bytes(width: int = 64, height: int = 64) -> bytes:
    """A small real PNG (what an honest server would send)."""
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


@functools.cache
def bomb_png(side: int = BOMB_SIDE) -> bytes:
    """A valid 1-bit greyscale PNG of `side`² pixels of zeros: ~100 KB that inflate to side²/8 bytes
    of raw data (112 MB at 30 000) and to side² bytes once decoded to 8-bit (900 MB)."""
    row = b"\0" * (1 + (side + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    rows_per_piece = max(1, len(CHUNK) // len(row))
    piece = compressor.compress(row * rows_per_piece)
    parts = [piece]
    full, rest = divmod(side, rows_per_piece)
    parts += [compressor.compress(row * rows_per_piece) for _ in range(full - 1)]
    parts += [compressor.compress(row * rest), compressor.flush()]
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b"")


class MaliciousComfy:
    """The hostile server on a background thread; `start()` returns its base URL."""

    def __init__(self, misbehaviour: Misbehaviour, object_info: dict[str, Any], escape_name: str) -> None:
        self.misbehaviour = misbehaviour
        self.object_info = object_info  # {node class: its /object_info entry}
        self.escape_name = escape_name  # the file its hostile paths point at
        self.workflows: list[dict[str, Any]] = []
        self.view_requests = 0
        self._sockets: dict[str, web.WebSocketResponse] = {}
        self._history: dict[str, Any] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="malicious-comfy", daemon=True)
        self._runner: web.AppRunner | None = None
        self.url = ""

    # ------------------------------------------------------------------ lifecycle
    def _call(self, coro: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout=30)

    def start(self) -> str:
        self._thread.start()
        self.url = self._call(self._start())
        return self.url

    async def _start(self) -> str:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/system_stats", self._system_stats)
        app.router.add_get("/queue", self._queue)
        app.router.add_post("/queue", self._ok)
        app.router.add_post("/interrupt", self._ok)
        app.router.add_post("/free", self._ok)
        app.router.add_get("/object_info/{node}", self._node_info)
        app.router.add_get("/view_metadata/{folder}", lambda _: web.Response(status=404))
        app.router.add_post("/prompt", self._prompt)
        app.router.add_get("/history/{prompt_id}", self._history_entry)
        app.router.add_get("/view", self._view)
        app.router.add_post("/upload/image", self._upload)
        app.router.add_get("/ws", self._ws)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        async def shutdown() -> None:
            for task in list(self._tasks):
                task.cancel()
            for ws in list(self._sockets.values()):
                await ws.close()
            if self._runner is not None:
                await self._runner.cleanup()

        self._call(shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ health and inventory
    async def _system_stats(self, _: web.Request) -> web.Response:
        if self.misbehaviour is Misbehaviour.GARBAGE_HEALTH:
            return web.json_response({"system": ["not", "an", "object"], "devices": {"0": "x"}})
        return web.json_response({
            "system": {"os": "posix", "comfyui_version": "0.3.64", "python_version": "3.11"},
            "devices": [{"name": "cuda:0 Evil GPU", "type": "cuda", "index": 0,
                         "vram_total": 8 << 30, "vram_free": 6 << 30}]})

    async def _queue(self, _: web.Request) -> web.Response:
        if self.misbehaviour is Misbehaviour.GARBAGE_HEALTH:
            return web.json_response({"queue_running": [[1]], "queue_pending": "nope"})
        return web.json_response({"queue_running": [], "queue_pending": []})

    async def _node_info(self, request: web.Request) -> web.Response:
        node = request.match_info["node"]
        if self.misbehaviour is Misbehaviour.GARBAGE_HEALTH:
            return web.json_response({node: {"input": {"required": {"ckpt_name": "not a combo"}}}})
        return web.json_response({node: self.object_info[node]} if node in self.object_info else {})

    async def _ok(self, _: web.Request) -> web.Response:
        return web.json_response({})

    async def _upload(self, request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"name": f"../../{self.escape_name}", "subfolder": "", "type": "input"})

    # ------------------------------------------------------------------ prompts
    async def _prompt(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.workflows.append(body["prompt"])
        prompt_id = body.get("prompt_id") or "evil"
        if self.misbehaviour is Misbehaviour.WRONG_JSON:
            if len(self.workflows) % 2:
                return web.Response(text="<html>502 Bad Gateway</html>", content_type="text/html")
            return web.json_response(["prompt_id", prompt_id])
        ws = self._sockets.get(str(body.get("client_id")))
        if ws is not None:
            self._spawn(self._play(ws, prompt_id, body["prompt"]))
        return web.json_response({"prompt_id": prompt_id, "number": len(self.workflows), "node_errors": {}})

    def _image_items(self, batch_size: int) -> list[dict[str, str]]:
        if self.misbehaviour in (Misbehaviour.TRAVERSAL_NAMES, Misbehaviour.TRAVERSAL_HISTORY):
            hostile = [
                {"filename": f"../../../../{self.escape_name}", "subfolder": "", "type": "output"},
                {"filename": self.escape_name, "subfolder": "../../..", "type": "output"},
                {"filename": f"/tmp/{self.escape_name}", "subfolder": "", "type": "output"},
                {"filename": f"C:\\{self.escape_name}", "subfolder": "", "type": "output"},
            ]
            return [hostile[i % len(hostile)] for i in range(batch_size)]
        if self.misbehaviour is Misbehaviour.FEWER_IMAGES:
            batch_size -= 1
        elif self.misbehaviour is Misbehaviour.DUPLICATE_IMAGES:
            batch_size += 1  # and `_play` sends the executed message twice
        return [{"filename": f"evil_{i:05}_.png", "subfolder": "", "type": "output"} for i in range(batch_size)]

    async def _play(self, ws: web.WebSocketResponse, prompt_id: str, workflow: dict[str, Any]) -> None:
        """The message sequence of one prompt, bent by the misbehaviour."""
        save = next((nid for nid, node in workflow.items() if node.get("class_type") == "SaveImage"), "9")
        batch = next((int(n["inputs"].get("batch_size", 1)) for n in workflow.values()
                      if n.get("class_type") == "EmptyLatentImage"), 1)
        send = ws.send_json
        await send({"type": "execution_start", "data": {"prompt_id": prompt_id, "timestamp": int(time.time())}})
        behaviour = self.misbehaviour
        if behaviour is Misbehaviour.JUNK_WEBSOCKET:
            await self._junk_forever(ws, prompt_id)
            return
        if behaviour is Misbehaviour.TRAVERSAL_HISTORY:
            self._history[prompt_id] = {
                "prompt": [1, prompt_id, workflow, {}, [save]],
                "outputs": {save: {"images": self._image_items(batch)}},
                "status": {"status_str": "success", "completed": True, "messages": []}}
            await ws.close()  # the client reconnects and asks /history
            return
        if behaviour is Misbehaviour.BAD_PREVIEWS:
            await self._bad_previews(ws, prompt_id)
        await send({"type": "executing", "data": {"node": save, "display_node": save, "prompt_id": prompt_id}})
        output: Any = {"images": self._image_items(batch)}
        if behaviour is Misbehaviour.MISSING_FIELDS:
            await send({"type": "executing", "data": ["node", save]})
            await send({"type": "progress", "data": {"prompt_id": prompt_id, "value": "lots", "max": None}})
            output = {"images": [{"subfolder": "", "type": "output"}] * batch}
        for _ in range(2 if behaviour is Misbehaviour.DUPLICATE_IMAGES else 1):
            await send({"type": "executed", "data": {"node": save, "display_node": save, "output": output,
                                                     "prompt_id": prompt_id}})
        await send({"type": "execution_success", "data": {"prompt_id": prompt_id, "timestamp": int(time.time())}})

    async def _junk_forever(self, ws: web.WebSocketResponse, prompt_id: str) -> None:
        junk: list[Callable[[], Any]] = [
            lambda: ws.send_str("not json {"),
            lambda: ws.send_str("[1, 2, 3]"),
            lambda: ws.send_str('"just a string"'),
            lambda: ws.send_json({"no_type": True}),
            lambda: ws.send_json({"type": "executing", "data": [prompt_id]}),
            lambda: ws.send_json({"type": "progress", "data": {"prompt_id": prompt_id, "value": [], "max": {}}}),
            lambda: ws.send_json({"type": "progress", "data": {"prompt_id": prompt_id, "value": 1e400}}),
            lambda: ws.send_json({"type": 7, "data": {"prompt_id": prompt_id}}),
            lambda: ws.send_bytes(b"\x00\x01"),
            lambda: ws.send_bytes(struct.pack(">II", 99, 0) + b"junk"),
        ]
        i = 0
        while not ws.closed and self.misbehaviour is Misbehaviour.JUNK_WEBSOCKET:
            await junk[i % len(junk)]()
            i += 1
            if i % len(junk) == 0:
                await asyncio.sleep(0.001)  # pacing, so the junk shares two cores with the app under test

    async def _bad_previews(self, ws: web.WebSocketResponse, prompt_id: str) -> None:
        meta = json.dumps({"prompt_id": prompt_id, "node_id": "5", "image_type": "image/png"}).encode()
        for frame in (
            b"\x00\x00\x00",  # shorter than the 8-byte header
            struct.pack(">II", 4, 10_000) + b"{}",  # metadata length past the end
            struct.pack(">II", 4, 3) + b"[1]" + png_bytes(8, 8),  # metadata that is not an object
            struct.pack(">II", 4, 5) + b"nojsn",  # metadata that is not JSON
            struct.pack(">II", 4, len(meta)) + meta + bomb_png(),  # a decompression bomb as the preview
            struct.pack(">II", 1, 2) + bomb_png(),  # the same as a type-1 frame
        ):
            await ws.send_bytes(frame)
        await ws.send_json({"type": "progress", "data": {"prompt_id": prompt_id, "value": 1, "max": 1, "node": "5"}})

    async def _history_entry(self, request: web.Request) -> web.Response:
        prompt_id = request.match_info["prompt_id"]
        entry = self._history.get(prompt_id)
        return web.json_response({prompt_id: entry} if entry is not None else {})

    # ------------------------------------------------------------------ images
    async def _view(self, request: web.Request) -> web.StreamResponse:
        self.view_requests += 1
        behaviour = self.misbehaviour
        if behaviour is Misbehaviour.DECOMPRESSION_BOMB:
            return web.Response(body=bomb_png(), content_type="image/png")
        if behaviour is Misbehaviour.NOT_A_PNG:
            return web.Response(text="<html>gotcha</html>", content_type="image/png")
        if behaviour not in (Misbehaviour.HUGE_IMAGE, Misbehaviour.HUGE_DECLARED):
            return web.Response(body=png_bytes(), content_type="image/png")
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        if behaviour is Misbehaviour.HUGE_DECLARED:
            response.content_length = BIG_BYTES
        else:
            response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            await response.write(b"\x89PNG\r\n\x1a\n")
            for _ in range(BIG_BYTES // len(CHUNK)):
                await response.write(CHUNK)
        except (ConnectionError, asyncio.CancelledError):
            pass  # the client hung up, as it should
        return response

    # ------------------------------------------------------------------ websocket
    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        client_id = request.query.get("clientId", "anon")
        self._sockets[client_id] = ws
        await ws.send_json({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}},
                                                       "sid": client_id}})
        async for message in ws:
            if message.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                break
        if self._sockets.get(client_id) is ws:
            del self._sockets[client_id]
        return ws
