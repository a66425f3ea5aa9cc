"""Runs one queued prompt the way ComfyUI does, message for message.

Per prompt: `execution_start`, `execution_cached`, then per node `progress_state` (running),
`executing`, sampler `progress_state` + `progress` (+ preview frames) per step, `executed` for
nodes with UI output, `progress_state` (finished); then `execution_success` /
`execution_error` / `execution_interrupted`. Messages for a prompt go to its `client_id` only;
without one, only progress (and interruptions) are broadcast, as ComfyUI does. Node outputs are
cached by input signature and the cache keeps only the last prompt's nodes (ComfyUI's classic
cache), so an identical resubmit is served without re-rendering and returns the same files.

The simulator's own CPU work (rendering the pictures, PNG-encoding them) is not GPU time and must
not add to the time model's: a sampler whose latent a VAEDecode reads renders its pictures, and
PNG-encodes them when a SaveImage / PreviewImage reads that decode, in a worker thread while its
model loads and its steps run, as a GPU has the images when its modelled work is over; the
save then writes the bytes, and the time it took counts against the per-prompt overhead (which
models validation, the PNG save and the fetch) instead of adding to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from PIL import Image

from comfy.simulator.faults import Faults
from comfy.simulator.files import FileStore
from comfy.simulator.graph import execution_order, is_link, readers, signatures
from comfy.simulator.hub import Hub
from comfy.simulator.inventory import Inventory
from comfy.simulator.nodedefs import NodeCatalog
from comfy.simulator.nodes import NODE_FUNCTIONS, Latent, ModelRef, NodeResult, decode_latent
from comfy.simulator.progress import ProgressRegistry
from comfy.simulator.render import png_bytes, preview_jpeg
from comfy.simulator.timemodel import TimeModel

log = logging.getLogger(__name__)

DECODERS = ("VAEDecode",)
SAVERS = ("SaveImage", "PreviewImage")
Rendered = tuple[tuple[Image.Image, bytes | None], ...]  # pictures, each with its PNG bytes when encoded ahead


class Interrupted(Exception):
    """POST /interrupt hit the running prompt."""


class ServerDied(Exception):
    """The `die_after_images` fault fired: the process is gone."""


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class QueueItem:
    """One accepted prompt, as `/queue` and history list it: [number, id, prompt, extra_data, outputs]."""

    number: float
    prompt_id: str
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    outputs: list[str]

    @property
    def client_id(self) -> str | None:
        return self.extra_data.get("client_id")

    def as_list(self) -> list[Any]:
        return [self.number, self.prompt_id, self.prompt, self.extra_data, self.outputs]


@dataclass
class GpuState:
    """What the simulated GPU holds right now (drives load costs and /sim/state)."""

    checkpoint: str | None = None
    loras: tuple[tuple[str, float], ...] = ()
    images_done: int = 0


@dataclass
class Environment:
    """Everything of the server a run needs; shared by all runs of one server."""

    hub: Hub
    files: FileStore
    faults: Faults
    time_model: TimeModel
    inventory: Callable[[], Inventory]
    catalog: Callable[[], NodeCatalog]
    not_hung: asyncio.Event
    previews: bool = False
    gpu: GpuState = field(default_factory=GpuState)


def _write_png(path: Path, image: Image.Image, chunks: dict[str, str], encoded: bytes | None) -> None:
    path.write_bytes(png_bytes(image, chunks) if encoded is None else encoded)


def _retrieve(task: asyncio.Future[Rendered]) -> None:
    """An interrupted prompt never awaits its pictures: a failure there is not worth a warning."""
    if not task.cancelled():
        task.exception()


@dataclass(frozen=True)
class _Prepared:
    """A sampled latent's pictures, rendered while its sampler ran (the latent is kept so its id
    is not reused while the run looks it up by id)."""

    latent: Latent
    pictures: asyncio.Future[Rendered]


def _format_input(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)


class Executor:
    """Executes prompts one at a time for one server, keeping the output cache between them."""

    def __init__(self, env: Environment) -> None:
        self.env = env
        self.cache: dict[str, NodeResult] = {}
        self.interrupt_event = asyncio.Event()
        self.running: QueueItem | None = None
        self.current_node: str | None = None

    def interrupt(self, prompt_id: str | None) -> bool:
        """Interrupt the running prompt (any, or only `prompt_id`); False when nothing matched."""
        if self.running is None or prompt_id not in (None, self.running.prompt_id):
            return False
        log.info("interrupting prompt %s", self.running.prompt_id)
        self.interrupt_event.set()
        return True

    def reset(self) -> None:
        """Forget cached outputs (POST /free with free_memory, or a restarted process)."""
        self.cache.clear()

    def _salt(self, class_type: str, inputs: dict[str, Any]) -> str:
        """Outside-the-graph state in a node's cache key (input file bytes, a failing checkpoint)."""
        if class_type == "LoadImage":
            path = self.env.files.input_image(str(inputs.get("image", "")))
            return hashlib.sha256(path.read_bytes()).hexdigest() if path else ""
        if class_type == "CheckpointLoaderSimple" and inputs.get("ckpt_name") in self.env.faults.fail_checkpoints:
            return "failing"
        return ""

    async def run(self, item: QueueItem) -> dict[str, Any]:
        """Execute `item`; returns its history entry. Raises ServerDied if the server was killed."""
        self.running = item
        self.interrupt_event.clear()
        try:
            return await _Run(self, item).execute()
        finally:
            self.running = None
            self.current_node = None


class _Run:
    """One execution of one prompt; also the RunContext its nodes talk to."""

    def __init__(self, executor: Executor, item: QueueItem) -> None:
        self.executor = executor
        self.env = executor.env
        self.item = item
        self.sid = item.client_id
        self.messages: list[list[Any]] = []
        self.progress = ProgressRegistry(item.prompt_id)
        self.node_id = ""
        self.chunks = {"prompt": json.dumps(item.prompt)}  # the text chunks of every PNG it saves
        self.chunks.update({k: json.dumps(v) for k, v in item.extra_data.get("extra_pnginfo", {}).items()})
        self.prepared: dict[int, _Prepared] = {}  # by id of the sampled latent
        self.encoded: dict[int, tuple[Image.Image, bytes]] = {}  # PNG bytes made ahead, by id of the picture
        self.saving = 0.0  # seconds spent writing images, part of the per-prompt overhead

    # --- messages -------------------------------------------------------------------------
    async def add_message(self, event: str, data: dict[str, Any], broadcast: bool = False) -> None:
        """A message that is also kept in the history entry's status."""
        self.messages.append([event, data])
        if self.sid is not None or broadcast:
            await self.env.hub.send(event, data, self.sid)

    async def to_client(self, event: str, data: dict[str, Any]) -> None:
        """A message only the submitting client gets (dropped when there is none)."""
        if self.sid is not None:
            await self.env.hub.send(event, data, self.sid)

    async def send_progress_state(self) -> None:
        await self.env.hub.send("progress_state", self.progress.message(), self.sid)

    # --- time -----------------------------------------------------------------------------
    async def spend(self, seconds: float) -> None:
        """Let simulated GPU time pass; interruptible; frozen while the server hangs."""
        await self.spend_until(asyncio.get_running_loop().time() + seconds)

    async def spend_until(self, deadline: float) -> float:
        """Let simulated GPU time pass until `deadline` (loop clock). Returns the deadline, moved
        later by any time the server was hung first, for the caller's next step."""
        loop = asyncio.get_running_loop()
        if not self.env.not_hung.is_set():
            hung_at = loop.time()
            await self.env.not_hung.wait()
            deadline += loop.time() - hung_at
        if deadline > loop.time():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(deadline):
                    await self.executor.interrupt_event.wait()
        else:
            await asyncio.sleep(0)
        if self.executor.interrupt_event.is_set():
            raise Interrupted()
        return deadline

    # --- RunContext -----------------------------------------------------------------------
    def check_checkpoint(self, name: str) -> None:
        if name in self.env.faults.fail_checkpoints:
            log.info("fault: checkpoint %s fails to load", name)
            raise RuntimeError(f"ERROR: Could not detect model type of: models/checkpoints/{name}\n\n")

    async def load_model(self, model: ModelRef) -> None:
        gpu = self.env.gpu
        checkpoint_changed = gpu.checkpoint != model.checkpoint
        loras_changed = gpu.loras != model.loras
        entry = self.env.inventory().model(model.checkpoint)
        seconds = self.env.time_model.load_seconds(entry.family if entry else "sd15", checkpoint_changed, loras_changed)
        if checkpoint_changed or loras_changed:
            log.info("loading %s with %d LoRA(s): %.2fs", model.checkpoint, len(model.loras), seconds)
        await self.spend(seconds)
        gpu.checkpoint, gpu.loras = model.checkpoint, model.loras

    async def sample(self, steps: int, latent: Latent) -> None:
        cfg = latent.sample.cfg if latent.sample is not None else None
        step_seconds = self.env.time_model.step_seconds_for(latent.width, latent.height, latent.batch_size, cfg)
        picture = (await self._prepared_pictures(latent))[0][0] if self.env.previews else None
        # Steps keep to one schedule, so a timer firing late (~1 ms each) is not added 20 times over.
        step_end = asyncio.get_running_loop().time()
        for step in range(1, steps + 1):
            step_end = await self.spend_until(step_end + step_seconds)
            self.progress.update(self.node_id, step, steps)
            await self.send_progress_state()
            jpeg = preview_jpeg(picture, step / steps) if picture is not None else None
            if jpeg is not None:
                await self.env.hub.send_preview(jpeg, self.preview_metadata(), self.sid, with_metadata=True)
            await self.env.hub.send("progress", {"value": step, "max": steps, "prompt_id": self.item.prompt_id,
                                                 "node": self.node_id}, self.sid)
            if jpeg is not None:
                await self.env.hub.send_preview(jpeg, self.preview_metadata(), self.sid, with_metadata=False)

    def prepare(self, latent: Latent, pictures: Callable[[], tuple[Image.Image, ...]]) -> None:
        """Start rendering (and encoding) the running sampler's pictures in a worker thread, when
        a VAEDecode reads its latent (and a SaveImage / PreviewImage that decode); nothing when
        nothing decodes it (a hires first pass), so no picture is made in vain."""
        decoders = readers(self.item.prompt, self.node_id, DECODERS)
        if not decoders:
            return
        encode = any(readers(self.item.prompt, decoder, SAVERS) for decoder in decoders)

        def render() -> Rendered:
            return tuple((image, png_bytes(image, self.chunks) if encode else None) for image in pictures())
        rendering = asyncio.ensure_future(asyncio.to_thread(render))
        rendering.add_done_callback(_retrieve)
        self.prepared[id(latent)] = _Prepared(latent, rendering)

    async def _prepared_pictures(self, latent: Latent) -> Rendered:
        """The latent's pictures: those `prepare` made for it, else rendered now (not encoded)."""
        prepared = self.prepared.get(id(latent))
        if prepared is not None and prepared.latent is latent:
            return await prepared.pictures
        return await asyncio.to_thread(lambda: tuple((image, None) for image in decode_latent(latent)))

    def preview_metadata(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "prompt_id": self.item.prompt_id, "display_node_id": self.node_id,
                "parent_node_id": None, "real_node_id": self.node_id, "image_type": "image/jpeg"}

    async def decode(self, latent: Latent) -> tuple[Image.Image, ...]:
        """The latent's pictures once the modelled decode time has passed: rendered while its
        sampler ran when this run sampled it, else now, during the decode."""
        seconds = self.env.time_model.decode_seconds_for(latent.width, latent.height, latent.batch_size)
        rendered, _ = await asyncio.gather(self._prepared_pictures(latent), self.spend(seconds))
        self.encoded.update({id(image): (image, data) for image, data in rendered if data is not None})
        return tuple(image for image, _ in rendered)

    async def save_images(self, images: tuple[Image.Image, ...], folder_type: str,
                          prefix: str) -> list[dict[str, str]]:
        """One after another, as ComfyUI's SaveImage does; the PNG encoding is off the loop, and
        made already while the sampler ran for the pictures its decode gave."""
        started = asyncio.get_running_loop().time()
        saved = []
        for image in images:
            path, filename, subfolder = self.env.files.next_image_path(folder_type, prefix)
            ahead = self.encoded.get(id(image))
            await asyncio.to_thread(_write_png, path, image, self.chunks, ahead[1] if ahead and ahead[0] is image else None)
            saved.append({"filename": filename, "subfolder": subfolder, "type": folder_type})
            self.count_image()
        self.saving += asyncio.get_running_loop().time() - started
        return saved

    def count_image(self) -> None:
        """One more image done; fires the `die_after_images` fault when its count runs out."""
        self.env.gpu.images_done += 1
        faults = self.env.faults
        remaining = faults.die_after_images
        if remaining is None:
            return
        if remaining <= 1:
            faults.die_after_images = None
            log.warning("fault: dying after image %d", self.env.gpu.images_done)
            raise ServerDied()
        faults.die_after_images = remaining - 1

    def open_input_image(self, name: str) -> Image.Image:
        path = self.env.files.input_image(name)
        if path is None:
            raise FileNotFoundError(name)
        return Image.open(path)

    # --- the run --------------------------------------------------------------------------
    def resolve_inputs(self, node: dict[str, Any], values: dict[str, tuple[Any, ...]]) -> dict[str, Any]:
        return {name: values[value[0]][value[1]] if is_link(value) else value for name, value in node["inputs"].items()}

    async def execute(self) -> dict[str, Any]:
        item, prompt, catalog = self.item, self.item.prompt, self.env.catalog()
        pid = item.prompt_id
        await self.add_message("execution_start", {"prompt_id": pid, "timestamp": now_ms()})
        keys = signatures(prompt, self.executor._salt)
        cache = self.executor.cache
        cached = [node_id for node_id in prompt if keys[node_id] in cache]
        await self.add_message("execution_cached", {"nodes": cached, "prompt_id": pid, "timestamp": now_ms()})
        order = execution_order(prompt, item.outputs, lambda n: n in cached,
                                lambda n: catalog.is_output(prompt[n]["class_type"]))
        values = {node_id: cache[keys[node_id]].outputs for node_id in cached}
        outputs: dict[str, Any] = {}
        executed: list[str] = []
        status = "success"
        try:
            for node_id in order:
                self.node_id = self.executor.current_node = node_id
                result = cache[keys[node_id]] if node_id in cached else await self.execute_node(node_id, values)
                if node_id not in cached:
                    cache[keys[node_id]] = result
                    executed.append(node_id)
                values[node_id] = result.outputs
                if result.ui is not None:
                    outputs[node_id] = result.ui
                    await self.to_client("executed", {"node": node_id, "display_node": node_id, "output": result.ui,
                                                      "prompt_id": pid})
                self.progress.finish(node_id)
                await self.send_progress_state()
            # validation, saving, the fetch: per prompt; the simulator's own saving is part of it
            await self.spend(max(0.0, self.env.time_model.prompt_seconds() - self.saving))
            await self.add_message("execution_success", {"prompt_id": pid, "timestamp": now_ms()})
        except Interrupted:
            status = "error"
            await self.add_message("execution_interrupted", {
                "prompt_id": pid, "node_id": self.node_id, "node_type": prompt[self.node_id]["class_type"],
                "executed": executed, "timestamp": now_ms()}, broadcast=True)
        except _NodeFailure as failure:
            status = "error"
            await self.add_message("execution_error", self.error_data(failure, executed))
        finally:
            for key in [k for k in cache if k not in set(keys.values())]:
                del cache[key]
        log.info("prompt %s: %s (%d run, %d cached)", pid, status, len(executed), len(cached))
        meta = {n: {"node_id": n, "display_node": n, "parent_node": None, "real_node_id": n} for n in outputs}
        return {"prompt": item.as_list(), "outputs": outputs,
                "status": {"status_str": status, "completed": status == "success", "messages": self.messages},
                "meta": meta}

    async def execute_node(self, node_id: str, values: dict[str, tuple[Any, ...]]) -> NodeResult:
        node = self.item.prompt[node_id]
        await self.spend(0)
        self.progress.start(node_id)
        await self.send_progress_state()
        await self.to_client("executing", {"node": node_id, "display_node": node_id, "prompt_id": self.item.prompt_id})
        inputs = self.resolve_inputs(node, values)
        function = NODE_FUNCTIONS.get(node["class_type"])
        try:
            if function is None:
                raise NotImplementedError(f"the DraftGrid simulator does not execute {node['class_type']} nodes")
            return await function(self, **inputs)
        except (Interrupted, ServerDied):
            raise
        except Exception as exc:
            raise _NodeFailure(node_id, inputs, exc) from exc

    def error_data(self, failure: _NodeFailure, executed: list[str]) -> dict[str, Any]:
        exc = failure.exc
        return {"prompt_id": self.item.prompt_id, "node_id": failure.node_id,
                "node_type": self.item.prompt[failure.node_id]["class_type"], "executed": executed,
                "exception_message": str(exc), "exception_type": type(exc).__name__,
                "traceback": traceback.format_tb(exc.__traceback__),
                "current_inputs": {name: [_format_input(v)] for name, v in failure.inputs.items()},
                "current_outputs": list(self.item.prompt), "timestamp": now_ms()}


class _NodeFailure(Exception):
    """A node raised: becomes `execution_error`."""

    def __init__(self, node_id: str, inputs: dict[str, Any], exc: Exception) -> None:
        super().__init__(str(exc))
        self.node_id, self.inputs, self.exc = node_id, inputs, exc
