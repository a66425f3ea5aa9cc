"""Async client for one ComfyUI server: HTTP (httpx) for requests, one WebSocket per client for the
event stream.

Why one socket: ComfyUI sends a prompt's events only to the socket whose `clientId` submitted it,
so every POST /prompt carries this client's id and a reader task routes each message to the
waiter of its `prompt_id`. We choose prompt ids ourselves (ComfyUI accepts them) so the waiter
exists before the prompt is queued and no event can be missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from comfy.errors import (
    ComfyConnectionError,
    ComfyDisconnected,
    ComfyError,
    ComfyInterrupted,
    ComfyProtocolError,
    ComfyTimeout,
    error_from_response,
)
from comfy.models import ServerInventory
from comfy.protocol import (
    CLIP_LOADER_FILES,
    ImageRef,
    OutputImage,
    Preview,
    Progress,
    QueueState,
    SystemStats,
    check_file_name,
    check_png,
    decode_preview,
    execution_error,
    history_failure,
    history_finished,
    history_image_refs,
    image_refs,
    parse_inventory,
    parse_progress,
    parse_queue,
    parse_system_stats,
)

log = logging.getLogger(__name__)

DEFAULT_MAX_IMAGE_BYTES = 64 * 1024 * 1024
# One image download per server at a time: a hostile server answering every /view with endless
# bytes then costs at most `max_image_bytes` of memory, not that times the images in flight.
PARALLEL_DOWNLOADS = 1
DEFAULT_MAX_IMAGE_PIXELS = 4096 * 4096  # a quality-tier SDXL image with a hires pass is ~2.3 MP
INVENTORY_NODES = ("CheckpointLoaderSimple", "LoraLoader", "KSampler", "UNETLoader", *CLIP_LOADER_FILES, "VAELoader")
_WS_MAX_FRAME = 32 * 1024 * 1024
# The event socket is opened without permessage-deflate. ComfyUI's aiohttp socket compresses when
# the client offers it, but its frames are small JSON and JPEG/PNG previews that deflate cannot
# shrink, so compression only costs CPU at both ends: every preview inflated by the app's pool loop.
_WS_COMPRESSION = None
_DROPPED = object()  # put on every waiting stream when the socket closes

ProgressCallback = Callable[[Progress], None]
PreviewCallback = Callable[[Preview], None]


class ComfyClient:
    """One ComfyUI server. Use as `async with ComfyClient(url) as c: ...`."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 30,
        connect_timeout: float = 5,
        name: str | None = None,
        max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
        max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.name = name or self.base_url
        self.client_id = str(uuid.uuid4())
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_image_bytes = max_image_bytes
        self.max_image_pixels = max_image_pixels
        self._http = httpx.AsyncClient(
            base_url=self.base_url, timeout=httpx.Timeout(timeout, connect=connect_timeout)
        )
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ws_lock = asyncio.Lock()
        self._streams: dict[str, asyncio.Queue[Any]] = {}
        self._running_prompt: str | None = None
        self._downloads = asyncio.Semaphore(PARALLEL_DOWNLOADS)

    async def __aenter__(self) -> ComfyClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the socket, stop the reader and release HTTP connections."""
        ws, reader = self._ws, self._reader
        self._ws = self._reader = None
        if ws is not None:
            await ws.close()
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        await self._http.aclose()

    # ---------------------------------------------------------------- HTTP plumbing

    @contextlib.contextmanager
    def _transport_errors(self, what: str) -> Iterator[None]:
        """Translate httpx failures into our error classes, naming the server and the request."""
        try:
            yield
        except httpx.ConnectTimeout as exc:
            raise ComfyConnectionError(f"{self.name}: connecting for {what} timed out ({exc})") from exc
        except httpx.TimeoutException as exc:
            raise ComfyTimeout(f"{self.name}: no answer to {what} within {self.timeout:g} s") from exc
        except httpx.ConnectError as exc:
            raise ComfyConnectionError(f"{self.name}: cannot connect to {self.base_url} ({exc})") from exc
        except httpx.HTTPError as exc:
            raise ComfyConnectionError(f"{self.name}: {what} failed: {exc!r}") from exc

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send a request; any status >= 400 becomes the matching ComfyError."""
        with self._transport_errors(f"{method} {path}"):
            response = await self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise error_from_response(response.status_code, response.text)
        return response

    def _json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise ComfyProtocolError(
                f"{self.name}: {response.request.url.path} answered non-JSON: {response.text[:200]!r}"
            ) from None

    async def _get_json(self, path: str, **kwargs: Any) -> Any:
        return self._json(await self._request("GET", path, **kwargs))

    # ---------------------------------------------------------------- endpoints

    async def object_info(self, node: str | None = None) -> dict[str, Any]:
        """GET /object_info (all nodes) or /object_info/{node}; an unknown node gives {}."""
        path = "/object_info" if node is None else f"/object_info/{quote(node, safe='')}"
        info = await self._get_json(path)
        if not isinstance(info, dict):
            raise ComfyProtocolError(f"{self.name}: {path} is not an object")
        return info

    async def inventory(self) -> ServerInventory:
        """Checkpoints, LoRAs, samplers, schedulers and split-model files, from the nodes that list them."""
        parts = await asyncio.gather(*(self.object_info(node) for node in INVENTORY_NODES))
        merged: dict[str, Any] = {}
        for part in parts:
            merged.update(part)
        return parse_inventory(merged)

    async def view_metadata(self, filename: str, folder: str = "loras") -> dict[str, str] | None:
        """Safetensors `__metadata__` of a model file; None when it has none (404, empty body).

        Values are strings as ComfyUI sends them (`ss_tag_frequency` stays a JSON string).
        """
        path = f"/view_metadata/{quote(folder, safe='')}"
        with self._transport_errors(f"GET {path}"):
            response = await self._http.get(path, params={"filename": filename})
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise error_from_response(response.status_code, response.text)
        meta = self._json(response)
        if not isinstance(meta, dict):
            raise ComfyProtocolError(f"{self.name}: metadata of {filename} is not an object")
        return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()}

    async def submit(self, workflow: dict[str, Any], prompt_id: str | None = None) -> str:
        """POST /prompt with this client's id; returns the prompt id. Raises ComfyValidationError /
        ComfyInvalidPrompt / ComfyServerError when refused."""
        body: dict[str, Any] = {"prompt": workflow, "client_id": self.client_id}
        if prompt_id is not None:
            body["prompt_id"] = prompt_id
        answer = self._json(await self._request("POST", "/prompt", json=body))
        pid = answer.get("prompt_id") if isinstance(answer, dict) else None
        if not isinstance(pid, str):
            raise ComfyProtocolError(f"{self.name}: /prompt answer without prompt_id: {str(answer)[:200]}")
        log.debug("%s: queued prompt %s (number %s)", self.name, pid, answer.get("number"))
        return pid

    async def history(self, prompt_id: str | None = None, max_items: int | None = None) -> dict[str, Any]:
        """GET /history or /history/{id}; an unknown id gives {}."""
        path = "/history" if prompt_id is None else f"/history/{quote(prompt_id, safe='')}"
        params = {"max_items": max_items} if max_items is not None else None
        data = await self._get_json(path, params=params)
        if not isinstance(data, dict):
            raise ComfyProtocolError(f"{self.name}: {path} is not an object")
        return data

    async def view(self, filename: str, subfolder: str = "", type: str = "output") -> bytes:
        """Bytes of a saved image; refuses hostile names and answers over `max_image_bytes`."""
        params = {
            "filename": check_file_name(filename, "file name"),
            "subfolder": check_file_name(subfolder, "subfolder"),
            "type": check_file_name(type, "image type"),
        }
        with self._transport_errors("GET /view"):
            async with self._http.stream("GET", "/view", params=params) as response:
                if response.status_code >= 400:
                    raise error_from_response(response.status_code, (await response.aread()).decode(errors="replace"))
                declared = int(response.headers.get("content-length") or 0)
                if declared > self.max_image_bytes:
                    raise self._oversize(filename, declared)
                data = bytearray()
                async for chunk in response.aiter_bytes():
                    data += chunk
                    if len(data) > self.max_image_bytes:
                        size = len(data)
                        data.clear()  # the exception's traceback keeps this frame, and so the buffer, alive
                        raise self._oversize(filename, size)
        return bytes(data)

    def _oversize(self, filename: str, size: int) -> ComfyProtocolError:
        return ComfyProtocolError(
            f"{self.name}: image {filename} is over the {self.max_image_bytes} byte limit ({size} bytes)"
        )

    async def upload_image(self, png_bytes: bytes, name: str, subfolder: str = "", overwrite: bool = True) -> str:
        """POST /upload/image; returns the name to put in LoadImage's `image` input."""
        form = {"overwrite": "true" if overwrite else "false", "subfolder": subfolder, "type": "input"}
        files = {"image": (name, png_bytes, "image/png")}
        answer = self._json(await self._request("POST", "/upload/image", data=form, files=files))
        try:
            stored = check_file_name(answer["name"], "file name")
            folder = check_file_name(answer.get("subfolder", ""), "subfolder")
        except (KeyError, TypeError):
            raise ComfyProtocolError(f"{self.name}: upload answer without name: {str(answer)[:200]}") from None
        return f"{folder}/{stored}" if folder else stored

    async def system_stats(self) -> SystemStats:
        """GET /system_stats, parsed (device, VRAM, version) with the raw answer kept."""
        return parse_system_stats(await self._get_json("/system_stats"))

    async def queue(self) -> QueueState:
        """GET /queue: running and pending prompt ids."""
        return parse_queue(await self._get_json("/queue"))

    async def interrupt(self, prompt_id: str | None = None) -> None:
        """POST /interrupt; with a prompt id only that prompt is stopped (no-op if not running)."""
        if prompt_id is None:
            await self._request("POST", "/interrupt", content=b"")
        else:
            await self._request("POST", "/interrupt", json={"prompt_id": prompt_id})

    async def delete_from_queue(self, prompt_ids: list[str]) -> None:
        """POST /queue {"delete": [...]}: drop prompts that have not started yet."""
        await self._request("POST", "/queue", json={"delete": prompt_ids})

    async def free(self, unload_models: bool = True, free_memory: bool = True) -> None:
        """POST /free: ask the server to unload models and/or free memory."""
        await self._request("POST", "/free", json={"unload_models": unload_models, "free_memory": free_memory})

    # ---------------------------------------------------------------- WebSocket

    def _ws_url(self) -> str:
        scheme, rest = self.base_url.split("://", 1)
        return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/ws?clientId={quote(self.client_id)}"

    async def connect_ws(self) -> None:
        """Open the event socket (idempotent; reopens it when it was dropped)."""
        async with self._ws_lock:
            if self._ws is not None and self._reader is not None and not self._reader.done():
                return
            try:
                ws = await connect(
                    self._ws_url(), open_timeout=self.connect_timeout, max_size=_WS_MAX_FRAME, proxy=None,
                    compression=_WS_COMPRESSION,
                )
            except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
                raise ComfyConnectionError(f"{self.name}: cannot open event socket ({exc!r})") from exc
            # Real ComfyUI frontends announce this first; the server then sends type-4 preview frames
            # that carry their prompt id.
            await ws.send(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
            self._ws = ws
            self._reader = asyncio.create_task(self._read_loop(ws), name=f"comfy-ws-{self.name}")
            log.debug("%s: event socket open as %s", self.name, self.client_id)

    async def _read_loop(self, ws: ClientConnection) -> None:
        try:
            async for message in ws:
                if isinstance(message, bytes):
                    self._dispatch_binary(message)
                else:
                    self._dispatch_json(message)
        except ConnectionClosed:
            pass
        finally:
            if self._ws is ws:
                self._ws = None
            log.info("%s: event socket closed (%d prompt(s) waiting)", self.name, len(self._streams))
            for stream in self._streams.values():
                stream.put_nowait(_DROPPED)

    def _dispatch_json(self, text: str) -> None:
        try:
            message = json.loads(text)
            kind, data = message["type"], message.get("data") or {}
        except (ValueError, KeyError, TypeError, RecursionError):
            log.warning("%s: ignoring malformed ws message %r", self.name, text[:200])
            return
        if not isinstance(data, dict):  # e.g. {"type": "executing", "data": [...]}: nothing to route
            log.warning("%s: ignoring ws message whose data is not an object %r", self.name, text[:200])
            return
        prompt_id = data.get("prompt_id") if isinstance(data.get("prompt_id"), str) else None
        if kind == "execution_start" or (kind == "executing" and data.get("node") is not None):
            self._running_prompt = prompt_id
        stream = self._streams.get(prompt_id) if prompt_id else None
        if stream is not None:
            stream.put_nowait((kind, data))

    def _dispatch_binary(self, frame: bytes) -> None:
        try:
            preview = decode_preview(frame)
        except ComfyProtocolError as exc:
            log.warning("%s: ignoring binary frame: %s", self.name, exc)
            return
        if preview is None:
            return
        # Type-1 frames carry no prompt id; ComfyUI runs one prompt at a time, so it is the running one.
        stream = self._streams.get(preview.prompt_id or self._running_prompt or "")
        if stream is not None:
            stream.put_nowait(preview)

    # ---------------------------------------------------------------- running a prompt

    async def run(
        self,
        workflow: dict[str, Any],
        on_progress: ProgressCallback | None = None,
        on_preview: PreviewCallback | None = None,
        *,
        prompt_id: str | None = None,
    ) -> list[OutputImage]:
        """Submit a workflow, follow it to the end and return its images (bytes fetched via /view).

        Raises ComfyExecutionError / ComfyInterrupted for the prompt's own outcome, the submit
        errors of `submit`, ComfyDisconnected when the socket dropped and the outcome could not be
        recovered (one reconnect + /history), ComfyTimeout when the server stops answering.
        """
        refs = await self.execute(workflow, on_progress, on_preview, prompt_id=prompt_id)
        return await self.fetch_images(refs)

    async def execute(
        self,
        workflow: dict[str, Any],
        on_progress: ProgressCallback | None = None,
        on_preview: PreviewCallback | None = None,
        *,
        prompt_id: str | None = None,
    ) -> list[ImageRef]:
        """`run` without the downloads: where the finished prompt's images are. The server is free
        for its next prompt from here on, so a caller can fetch while it already works again."""
        prompt_id = prompt_id or str(uuid.uuid4())
        stream: asyncio.Queue[Any] = asyncio.Queue()
        self._streams[prompt_id] = stream
        try:
            await self.connect_ws()
            await self.submit(workflow, prompt_id=prompt_id)
            return await self._follow(prompt_id, stream, on_progress, on_preview)
        finally:
            self._streams.pop(prompt_id, None)

    async def fetch_images(self, refs: list[ImageRef]) -> list[OutputImage]:
        """The bytes of saved images, in the order of `refs`. One task per image, but each /view
        waits for this client's download semaphore (`PARALLEL_DOWNLOADS`, 1), shared with every
        other caller: a server's images are downloaded one at a time, and only the PNG checks
        overlap. The first failure is raised; the other downloads are not cancelled."""
        return list(await asyncio.gather(*(self._fetch(ref) for ref in refs)))

    async def _fetch(self, ref: ImageRef) -> OutputImage:
        async with self._downloads:
            data = await self.view(ref.filename, ref.subfolder, ref.type)
        try:
            check_png(data, ref.filename, self.max_image_pixels)
        except ComfyProtocolError as exc:
            raise ComfyProtocolError(f"{self.name}: {exc}") from None
        return OutputImage(**vars(ref), data=data)

    async def _follow(
        self,
        prompt_id: str,
        stream: asyncio.Queue[Any],
        on_progress: ProgressCallback | None,
        on_preview: PreviewCallback | None,
    ) -> list[ImageRef]:
        refs: list[ImageRef] = []
        reconnected = False
        while True:
            try:
                # Not asyncio.wait_for: on Python 3.11 it swallows a cancel that meets a message
                # already on its way, and a cancelled pool worker would follow its prompt to the end.
                async with asyncio.timeout(self.timeout):
                    item = await stream.get()
            except TimeoutError:
                # Silence is normal while queued behind other clients' prompts: ask the server.
                outcome = await self._probe(prompt_id, after="a quiet period")
                if outcome is not None:
                    return outcome
                continue
            if item is _DROPPED:
                if reconnected:
                    raise ComfyDisconnected(f"{self.name}: event socket dropped twice during prompt {prompt_id}")
                reconnected = True
                log.info("%s: socket dropped during %s; reconnecting once", self.name, prompt_id)
                try:
                    await self.connect_ws()
                except ComfyConnectionError as exc:
                    raise ComfyDisconnected(f"{self.name}: lost during prompt {prompt_id}: {exc}") from exc
                outcome = await self._probe(prompt_id, after="a reconnect")
                if outcome is not None:
                    return outcome
                continue
            if isinstance(item, Preview):
                if on_preview is not None:
                    on_preview(item)
                continue
            kind, data = item
            if kind == "progress" and on_progress is not None:
                on_progress(parse_progress(prompt_id, data))
            elif kind == "executed":
                refs.extend(image_refs(str(data.get("node")), data.get("output")))
            elif kind == "execution_error":
                raise execution_error(prompt_id, data)
            elif kind == "execution_interrupted":
                raise ComfyInterrupted(prompt_id, data.get("node_id"), data.get("node_type"))
            elif kind == "execution_success" or (kind == "executing" and data.get("node") is None):
                return refs

    async def _probe(self, prompt_id: str, *, after: str) -> list[ImageRef] | None:
        """Learn a prompt's fate over HTTP: None while queued/running, its images when done.

        The queue is read before the history: ComfyUI writes the history before it drops a prompt
        from the queue, so a prompt found in neither is really gone (e.g. the server restarted).
        """
        try:
            queue = await self.queue()
            if prompt_id in queue.running or prompt_id in queue.pending:
                return None
            entry = (await self.history(prompt_id)).get(prompt_id)
        except ComfyConnectionError as exc:
            raise ComfyDisconnected(f"{self.name}: lost during prompt {prompt_id}: {exc}") from exc
        if entry is None or not history_finished(entry):
            raise ComfyDisconnected(
                f"{self.name}: prompt {prompt_id} is neither queued nor finished after {after} (server restarted?)"
            )
        failure = history_failure(prompt_id, entry)
        if failure is not None:
            raise failure
        log.info("%s: prompt %s finished per /history after %s", self.name, prompt_id, after)
        return history_image_refs(entry)


__all__ = ["ComfyClient", "ComfyError", "ImageRef", "OutputImage", "Preview", "Progress", "QueueState", "SystemStats"]
