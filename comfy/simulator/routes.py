"""The HTTP + WebSocket routes of ComfyUI 0.3.64 that DraftGrid uses, plus `/sim/*` controls.

Every ComfyUI route is served both at its path and under `/api` (as the real server does);
empty-body answers are plain `web.Response(status=...)`, which is what aiohttp (and so ComfyUI)
sends: no content type, no body. `/sim/state` and `/sim/faults` exist only in the simulator.
"""

from __future__ import annotations

import json
import logging
import sys
import uuid
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from comfy.simulator.executor import QueueItem
from comfy.simulator.files import OutsideFolderError
from comfy.simulator.hub import Client
from comfy.simulator.render import reencode
from comfy.simulator.state import History, PromptQueue
from comfy.simulator.validation import error

if TYPE_CHECKING:
    from comfy.simulator.server import SimulatedComfy

log = logging.getLogger(__name__)

COMFYUI_VERSION = "0.3.64"
MAX_UPLOAD_SIZE = 104857600
SERVER_FEATURES = {"supports_preview_metadata": True, "max_upload_size": MAX_UPLOAD_SIZE}
SENSITIVE_EXTRA_DATA_KEYS = ("auth_token_comfy_org", "api_key_comfy_org")
MODEL_FOLDERS = ["checkpoints", "configs", "loras", "vae", "text_encoders", "diffusion_models", "clip_vision",
                 "style_models", "embeddings", "diffusers", "vae_approx", "controlnet", "gligen", "upscale_models",
                 "custom_nodes", "hypernetworks", "photomaker", "classifiers", "model_patches", "audio_encoders"]
VRAM_TOTAL = 24 * 1024**3
MODEL_VRAM = {"sd15": 2_100_000_000, "sdxl": 6_900_000_000}


def _status(sim: SimulatedComfy) -> dict[str, Any]:
    return {"status": {"exec_info": {"queue_remaining": sim.queue.remaining()}}}


def _clear_or_delete(store: PromptQueue | History, body: dict[str, Any]) -> None:
    """ComfyUI's `{"clear": true}` / `{"delete": [ids]}` body for POST /queue and POST /history."""
    if body.get("clear"):
        store.clear()
    if "delete" in body:
        store.delete(body["delete"])


class Routes:
    """Request handlers bound to one simulated server."""

    def __init__(self, sim: SimulatedComfy) -> None:
        self.sim = sim

    def table(self) -> list[web.RouteDef]:
        comfy_routes = [
            ("GET", "/ws", self.websocket), ("GET", "/prompt", self.get_prompt), ("POST", "/prompt", self.post_prompt),
            ("GET", "/queue", self.get_queue), ("POST", "/queue", self.post_queue),
            ("GET", "/history", self.get_history), ("POST", "/history", self.post_history),
            ("GET", "/history/{prompt_id}", self.get_history_prompt), ("POST", "/interrupt", self.interrupt),
            ("POST", "/free", self.free), ("GET", "/object_info", self.object_info),
            ("GET", "/object_info/{node_class}", self.object_info_node), ("GET", "/models", self.models),
            ("GET", "/models/{folder}", self.models_folder), ("GET", "/experiment/models", self.experiment_models),
            ("GET", "/experiment/models/{folder}", self.experiment_models_folder),
            ("GET", "/embeddings", self.embeddings), ("GET", "/features", self.features),
            ("GET", "/system_stats", self.system_stats), ("POST", "/upload/image", self.upload_image),
            ("GET", "/view", self.view), ("GET", "/view_metadata/{folder_name}", self.view_metadata),
        ]
        table = [web.route(method, prefix + path, handler)
                 for prefix in ("", "/api") for method, path, handler in comfy_routes]
        return table + [web.get("/sim/state", self.sim_state), web.post("/sim/faults", self.sim_faults)]

    # --- websocket ------------------------------------------------------------------------
    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        sid = request.rel_url.query.get("clientId") or uuid.uuid4().hex
        client = Client(sid, socket, request.transport)
        self.sim.hub.add(client)
        try:
            await socket.send_json({"type": "status", "data": {**_status(self.sim), "sid": sid}})
            running = self.sim.executor.running
            if running is not None and running.client_id == sid and self.sim.executor.current_node is not None:
                await socket.send_json({"type": "executing", "data": {"node": self.sim.executor.current_node}})
            first = True
            async for message in socket:
                if message.type == WSMsgType.TEXT:
                    await self._client_message(client, message.data, first)
                    first = False
        finally:
            self.sim.hub.remove(client)
        return socket

    async def _client_message(self, client: Client, text: str, first: bool) -> None:
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            log.info("ignoring non-JSON ws message from %s", client.sid)
            return
        if first and isinstance(data, dict) and data.get("type") == "feature_flags":
            client.feature_flags = data.get("data") or {}
            await client.socket.send_json({"type": "feature_flags", "data": SERVER_FEATURES})

    # --- prompts and queue ----------------------------------------------------------------
    async def get_prompt(self, request: web.Request) -> web.Response:
        return web.json_response(_status(self.sim)["status"])

    async def post_prompt(self, request: web.Request) -> web.Response:
        body = await request.json()  # malformed JSON → aiohttp's plain 500, as ComfyUI answers
        sim = self.sim
        if "number" in body:
            number = float(body["number"])
        else:
            number = -sim.number if body.get("front") else sim.number
            sim.number += 1
        if "prompt" not in body:
            return web.json_response({"error": error("no_prompt", "No prompt provided", "No prompt provided"),
                                      "node_errors": {}}, status=400)
        prompt = body["prompt"]
        prompt_id = str(body.get("prompt_id", uuid.uuid4()))
        result = sim.validate(prompt)
        extra_data = dict(body.get("extra_data", {}))
        if "client_id" in body:
            extra_data["client_id"] = body["client_id"]
        if not result.ok:
            return web.json_response({"error": result.error, "node_errors": result.node_errors}, status=400)
        for key in SENSITIVE_EXTRA_DATA_KEYS:
            extra_data.pop(key, None)
        await sim.enqueue(QueueItem(number, prompt_id, prompt, extra_data, result.outputs))
        return web.json_response({"prompt_id": prompt_id, "number": number, "node_errors": result.node_errors})

    async def get_queue(self, request: web.Request) -> web.Response:
        return web.json_response(self.sim.queue.snapshot())

    async def post_queue(self, request: web.Request) -> web.Response:
        body = await request.json()
        _clear_or_delete(self.sim.queue, body)
        log.info("queue edited: %s", body)
        await self.sim.broadcast_status()
        return web.Response(status=200)

    async def interrupt(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else {}
        self.sim.executor.interrupt(body.get("prompt_id") if isinstance(body, dict) else None)
        return web.Response(status=200)

    async def free(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else {}
        self.sim.free(bool(body.get("unload_models")), bool(body.get("free_memory")))
        return web.Response(status=200)

    # --- history --------------------------------------------------------------------------
    async def get_history(self, request: web.Request) -> web.Response:
        max_items = request.rel_url.query.get("max_items")
        return web.json_response(self.sim.history.get(int(max_items) if max_items is not None else None))

    async def get_history_prompt(self, request: web.Request) -> web.Response:
        return web.json_response(self.sim.history.one(request.match_info["prompt_id"]))

    async def post_history(self, request: web.Request) -> web.Response:
        _clear_or_delete(self.sim.history, await request.json())
        return web.Response(status=200)

    # --- nodes and models -----------------------------------------------------------------
    async def object_info(self, request: web.Request) -> web.Response:
        return web.json_response(self.sim.catalog().object_info())

    async def object_info_node(self, request: web.Request) -> web.Response:
        node_class = request.match_info["node_class"]
        definition = self.sim.catalog().node(node_class)
        return web.json_response({node_class: definition} if definition is not None else {})

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response(MODEL_FOLDERS)

    async def models_folder(self, request: web.Request) -> web.Response:
        folder = request.match_info["folder"]
        if folder not in MODEL_FOLDERS:
            return web.Response(status=404)
        return web.json_response(sorted(self.sim.inventory.folder(folder) or {}))

    async def experiment_models(self, request: web.Request) -> web.Response:
        return web.json_response([{"name": name, "folders": [f"models/{name}"]} for name in MODEL_FOLDERS])

    async def experiment_models_folder(self, request: web.Request) -> web.Response:
        folder = request.match_info["folder"]
        if folder not in MODEL_FOLDERS:
            return web.Response(status=404)
        files = self.sim.inventory.folder(folder) or {}
        return web.json_response([{"name": name, "pathIndex": 0, "modified": self.sim.started_at,
                                   "created": self.sim.started_at, "size": files[name].size}
                                  for name in sorted(files)])

    async def embeddings(self, request: web.Request) -> web.Response:
        return web.json_response([])

    async def features(self, request: web.Request) -> web.Response:
        return web.json_response(SERVER_FEATURES)

    async def view_metadata(self, request: web.Request) -> web.Response:
        files = self.sim.inventory.folder(request.match_info["folder_name"])
        filename = request.rel_url.query.get("filename")
        model = files.get(filename) if files is not None and filename else None
        if model is None or model.metadata is None:
            return web.Response(status=404)
        return web.json_response(model.metadata)

    async def system_stats(self, request: web.Request) -> web.Response:
        sim = self.sim
        loaded = sim.inventory.model(sim.loaded_checkpoint or "")
        vram_free = VRAM_TOTAL - (MODEL_VRAM.get(loaded.family, 0) if loaded else 0)
        device = {"name": f"cuda:{sim.device_index} {sim.device_name}", "type": "cuda", "index": sim.device_index,
                  "vram_total": VRAM_TOTAL, "vram_free": vram_free, "torch_vram_total": VRAM_TOTAL,
                  "torch_vram_free": vram_free}
        system = {"os": "posix", "ram_total": 64 * 1024**3, "ram_free": 48 * 1024**3,
                  "comfyui_version": COMFYUI_VERSION, "required_frontend_version": "1.27.10",
                  "installed_templates_version": "0.1.95", "required_templates_version": "0.1.95",
                  "python_version": sys.version, "pytorch_version": "none (DraftGrid simulator)",
                  "embedded_python": False, "argv": list(sys.argv)}
        return web.json_response({"system": system, "devices": [device]})

    # --- files ----------------------------------------------------------------------------
    async def upload_image(self, request: web.Request) -> web.Response:
        form = await request.post()
        image = form.get("image")
        if not isinstance(image, web.FileField) or not image.filename:
            return web.Response(status=400)
        folder_type = str(form.get("type") or "input")
        if folder_type not in ("input", "temp", "output"):
            folder_type = "input"
        subfolder = str(form.get("subfolder", ""))
        overwrite = str(form.get("overwrite", "")) in ("true", "1")
        try:
            name = self.sim.files.upload(image.file.read(), image.filename, subfolder, folder_type, overwrite)
        except OutsideFolderError:
            return web.Response(status=400)
        log.info("upload stored as %s/%s (%s)", subfolder, name, folder_type)
        return web.json_response({"name": name, "subfolder": subfolder, "type": folder_type})

    async def view(self, request: web.Request) -> web.StreamResponse:
        query = request.rel_url.query
        if "filename" not in query:
            return web.Response(status=404)
        found = self.sim.files.view_path(query["filename"], query.get("subfolder", ""), query.get("type", "output"))
        if isinstance(found, int):
            return web.Response(status=found)
        if "preview" in query:
            body, content_type = reencode(found.read_bytes(), query["preview"])
            return web.Response(body=body, content_type=content_type)
        return web.FileResponse(found, headers={"Content-Disposition": f'filename="{found.name}"'})

    # --- simulator-only -------------------------------------------------------------------
    async def sim_state(self, request: web.Request) -> web.Response:
        return web.json_response(self.sim.state())

    async def sim_faults(self, request: web.Request) -> web.Response:
        try:
            with self.sim.controlled_over(request.transport):
                self.sim.faults.update(await request.json())
        except (KeyError, TypeError, ValueError) as exc:
            return web.json_response({"error": f"unknown or bad fault: {exc}"}, status=400)
        response = web.json_response(self.sim.state())
        response.force_close()  # this connection may have been spared by a drop: do not keep it alive
        return response
