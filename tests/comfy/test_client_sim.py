"""ComfyClient against the simulator: every endpoint and every error kind."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator

import pytest

from comfy.client import ComfyClient
from comfy.errors import (
    ComfyConnectionError,
    ComfyDisconnected,
    ComfyExecutionError,
    ComfyInterrupted,
    ComfyInvalidPrompt,
    ComfyProtocolError,
    ComfyServerError,
    ComfyTimeout,
    ComfyValidationError,
)
from comfy.models import GenerationSpec, LoraSpec, RefineSource
from comfy.protocol import Progress
from comfy.simulator import TimeModel
from comfy.workflow import build_workflow

from .conftest import LORA, SD15, start_sims, stop_sims

SLOW_STEPS = TimeModel(checkpoint_load={"sd15": 0.0}, lora_change=0.0, step_seconds=0.2)  # progress at once, no end soon
SPEC = GenerationSpec(checkpoint=SD15[0], positive="a red boat", negative="blurry", seed=7, width=512,
                      height=512, steps=6, cfg=7.0, batch_size=2, loras=(LoraSpec(LORA, 0.7),))


@pytest.fixture
async def sim() -> AsyncIterator:
    [server] = await start_sims([SD15])
    yield server
    await stop_sims([server])


@pytest.fixture
async def client(sim) -> AsyncIterator[ComfyClient]:
    async with ComfyClient(sim.url, timeout=5, name=sim.name) as c:
        yield c


async def test_inventory_metadata_and_status_endpoints(client: ComfyClient) -> None:
    inventory = await client.inventory()
    assert set(inventory.checkpoints) == set(SD15) and LORA in inventory.loras
    assert "euler" in inventory.samplers and "normal" in inventory.schedulers
    assert "KSampler" in await client.object_info()
    assert await client.object_info("NoSuchNode") == {}
    meta = await client.view_metadata(LORA)
    assert meta is not None and json.loads(meta["ss_tag_frequency"]) == {"5_ink": {"ink": 12}}
    assert await client.view_metadata("plain.safetensors") is None
    assert await client.view_metadata("missing.safetensors") is None
    stats = await client.system_stats()
    assert stats.device and stats.vram_total > 0
    queue = await client.queue()
    assert (queue.running, queue.pending) == ((), ())
    assert await client.history("no-such-prompt") == {}
    await client.free()
    await client.interrupt()


async def test_run_streams_progress_and_returns_pngs_also_in_history(client: ComfyClient) -> None:
    progress: list[Progress] = []
    images = await client.run(build_workflow(SPEC), on_progress=progress.append, prompt_id="p-run")
    assert [i.batch_index for i in images] == [0, 1]
    assert all(i.data.startswith(b"\x89PNG") for i in images)
    assert progress[-1].value == progress[-1].max == SPEC.steps
    entry = (await client.history("p-run"))["p-run"]
    saved = [img["filename"] for out in entry["outputs"].values() for img in out["images"]]
    assert saved == [i.filename for i in images]
    assert await client.view(images[0].filename, images[0].subfolder) == images[0].data
    assert "p-run" in await client.history(max_items=5)


async def test_img2img_refine_with_batch_2_upload_then_run(client: ComfyClient) -> None:
    [source] = await client.run(build_workflow(GenerationSpec(**{**SPEC.__dict__, "batch_size": 1})))
    name = await client.upload_image(source.data, "src.png", subfolder="draftgrid")
    assert name == "draftgrid/src.png"
    refine = GenerationSpec(**{**SPEC.__dict__, "refine_from": RefineSource(source.data, 0.5), "batch_size": 2,
                               "hires_scale": 1.5})
    images = await client.run(build_workflow(refine, init_image_name=name))
    assert [i.batch_index for i in images] == [0, 1]
    assert all(i.data.startswith(b"\x89PNG") for i in images) and images[0].data != images[1].data


async def test_validation_and_invalid_prompt_errors(client: ComfyClient) -> None:
    bad = GenerationSpec(**{**SPEC.__dict__, "checkpoint": "nope.safetensors"})
    with pytest.raises(ComfyValidationError) as caught:
        await client.submit(build_workflow(bad))
    assert "ckpt_name 'nope.safetensors' not in list" in str(caught.value)
    assert caught.value.missing_models() == {"nope.safetensors"}
    with pytest.raises(ComfyInvalidPrompt) as no_outputs:
        await client.submit({})
    assert no_outputs.value.error_type == "prompt_no_outputs"


async def test_execution_error_names_the_node(sim, client: ComfyClient) -> None:
    sim.faults.fail_checkpoints = {SD15[0]}
    with pytest.raises(ComfyExecutionError) as caught:
        await client.run(build_workflow(SPEC))
    assert caught.value.node_type == "CheckpointLoaderSimple" and caught.value.node_id == "1"


async def test_interrupt_during_a_run(sim, client: ComfyClient) -> None:
    sim.time_model = SLOW_STEPS
    started = asyncio.Event()
    run = asyncio.create_task(client.run(build_workflow(SPEC), on_progress=lambda _p: started.set(), prompt_id="long"))
    await started.wait()
    await client.interrupt("long")
    with pytest.raises(ComfyInterrupted):
        await run


async def test_a_cancelled_run_stops_even_when_a_message_arrives_with_the_cancel(sim, client: ComfyClient) -> None:
    """The pool stops a batch by cancelling its workers; a worker following a prompt must stop
    although progress messages stream in (asyncio.wait_for on 3.11 returned the message instead)."""
    sim.time_model = SLOW_STEPS
    started = asyncio.Event()
    run = asyncio.create_task(client.execute(build_workflow(SPEC), on_progress=lambda _p: started.set(),
                                             prompt_id="cut"))
    await started.wait()
    client._streams["cut"].put_nowait(("progress", {"prompt_id": "cut", "value": 1, "max": SPEC.steps}))
    run.cancel()  # in the same loop turn as the message: both are due when the follower resumes
    with pytest.raises(asyncio.CancelledError):
        await run
    assert "cut" not in client._streams
    await client.interrupt("cut")


async def test_server_gone_mid_run_is_a_disconnect(sim, client: ComfyClient) -> None:
    sim.time_model = SLOW_STEPS
    started = asyncio.Event()
    run = asyncio.create_task(client.run(build_workflow(SPEC), on_progress=lambda _p: started.set()))
    await started.wait()
    await sim.stop()
    with pytest.raises(ComfyDisconnected, match=sim.name):
        await run


async def test_hung_server_times_out(sim) -> None:
    sim.faults.hang = True
    async with ComfyClient(sim.url, timeout=0.3) as client:
        with pytest.raises(ComfyTimeout, match="no answer to GET /system_stats"):
            await client.system_stats()


async def test_refused_port_is_a_connection_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with ComfyClient(f"http://127.0.0.1:{port}", name="ghost") as client:
        with pytest.raises(ComfyConnectionError, match="ghost: cannot connect"):
            await client.queue()
        with pytest.raises(ComfyConnectionError, match="event socket"):
            await client.run(build_workflow(SPEC))


async def test_missing_and_oversize_images(client: ComfyClient) -> None:
    with pytest.raises(ComfyServerError) as missing:
        await client.view("never_made.png")
    assert missing.value.status == 404
    [image, _] = await client.run(build_workflow(SPEC))
    client.max_image_bytes = 100
    with pytest.raises(ComfyProtocolError, match="byte limit"):
        await client.view(image.filename, image.subfolder)
