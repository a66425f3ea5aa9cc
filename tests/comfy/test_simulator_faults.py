"""Each fault switch, from Python and over POST /sim/faults; /sim/state; restart on the same port."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from comfy.client import ComfyClient
from comfy.errors import ComfyConnectionError
from comfy.models import GenerationSpec
from comfy.simulator import SimulatedComfy
from comfy.workflow import build_workflow
from tests.comfy.sim_fixtures import SLOW_STEPS, WsRecorder, http, sim, start_sim, submit, txt2img_prompt  # noqa: F401


async def fresh_get(url: str, path: str = "/queue", timeout: float | httpx.Timeout = 5) -> httpx.Response:
    """A request on a new connection (so a closed listener shows)."""
    async with httpx.AsyncClient(base_url=url, timeout=timeout) as client:
        return await client.get(path)


async def test_die_after_images_kills_the_server_mid_batch(tmp_path: Path) -> None:
    server = await start_sim(tmp_path, time_model=SLOW_STEPS)
    try:
        async with httpx.AsyncClient(base_url=server.url) as http:
            await http.post("/sim/faults", json={"die_after_images": 3})
            async with WsRecorder(server.url, "d") as ws:
                first = await submit(http, txt2img_prompt(seed=1, steps=2, batch=2), "d")
                await ws.wait_done(first)
                second = await submit(http, txt2img_prompt(seed=2, steps=2, batch=2), "d")
                await asyncio.wait_for(ws.closed.wait(), 10)
            assert "executed" not in [m["type"] for m in ws.json() if m["data"].get("prompt_id") == second]
        assert server.images_done == 3
        with pytest.raises(httpx.ConnectError):
            await fresh_get(server.url)
        await server.restart()
        assert (await fresh_get(server.url, "/history")).json() == {}  # a restarted process forgot everything
    finally:
        await server.stop()


async def test_die_after_zero_images_dies_now_and_drops_pooled_connections(sim: SimulatedComfy) -> None:
    async with ComfyClient(sim.url, timeout=5) as client, WsRecorder(sim.url, "z") as ws:
        await client.queue()  # the client now holds a kept-alive connection
        await ws.wait_type("status")
        sim.faults.die_after_images = 0
        await asyncio.wait_for(ws.closed.wait(), 10)
        with pytest.raises(ComfyConnectionError):
            await client.queue()
    assert ws.socket.close_code == 1006
    with pytest.raises(httpx.ConnectError):
        await fresh_get(sim.url)


async def test_refuse_connections_then_restart_on_same_port(sim: SimulatedComfy) -> None:
    url = sim.url
    sim.faults.refuse_connections = True
    with pytest.raises(httpx.ConnectError):
        await fresh_get(url)
    await sim.restart()
    assert sim.url == url
    assert (await fresh_get(url)).status_code == 200


async def test_refuse_connections_drops_open_connections_and_resumes_with_state(
        sim: SimulatedComfy, http: httpx.AsyncClient) -> None:
    async with WsRecorder(sim.url, "k") as ws:
        done = await submit(http, txt2img_prompt(batch=1), "k")
        await ws.wait_done(done)
        async with ComfyClient(sim.url, timeout=5) as client:
            assert done in await client.history(done)  # the client now holds a kept-alive connection
            switched = await http.post("/sim/faults", json={"refuse_connections": True})
            assert switched.json()["faults"]["refuse_connections"] is True  # the switching request is answered
            await asyncio.wait_for(ws.closed.wait(), 10)  # websockets are dropped, not closed politely
            with pytest.raises(ComfyConnectionError):
                await client.history(done)  # the pooled connection is gone and new ones are refused
            sim.faults.refuse_connections = False  # listening again at once, on the same port
            assert done in await client.history(done)  # state kept (unlike a kill)
            [image] = await client.run(build_workflow(GenerationSpec(
                checkpoint="dreamshaper_8.safetensors", positive="a cat", negative="", seed=3, width=64, height=64,
                steps=2, cfg=7.0)))
    assert image.data.startswith(b"\x89PNG")
    assert ws.socket.close_code == 1006  # abnormal closure: no close frame, as from a killed process


async def test_hang_accepts_but_never_answers(sim: SimulatedComfy, http: httpx.AsyncClient) -> None:
    await http.post("/sim/faults", json={"hang": True})
    # only the read may time out: on a busy machine a 0.3 s connect time-out could fire first
    with pytest.raises(httpx.ReadTimeout):
        await fresh_get(sim.url, timeout=httpx.Timeout(5, read=0.3))
    assert (await http.get("/sim/state")).json()["faults"]["hang"] is True  # controls still answer
    sim.faults.hang = False
    assert (await fresh_get(sim.url)).status_code == 200


async def test_hang_freezes_a_running_prompt(tmp_path: Path) -> None:
    server = await start_sim(tmp_path, time_model=SLOW_STEPS)
    try:
        async with httpx.AsyncClient(base_url=server.url) as http, WsRecorder(server.url, "h") as ws:
            prompt_id = await submit(http, txt2img_prompt(steps=20), "h")
            await ws.wait_type("progress", prompt_id, value=1)
            server.faults.hang = True
            frozen_at = server.executor.running
            server.faults.hang = False
            await ws.wait_done(prompt_id)
        assert frozen_at is not None and "execution_success" in ws.types()
    finally:
        await server.stop()


async def test_fail_checkpoints_over_http(sim: SimulatedComfy, http: httpx.AsyncClient) -> None:
    response = await http.post("/sim/faults", json={"fail_checkpoints": ["juggernautXL_v9.safetensors"]})
    assert response.json()["faults"]["fail_checkpoints"] == ["juggernautXL_v9.safetensors"]
    async with WsRecorder(sim.url, "f") as ws:
        bad = await submit(http, txt2img_prompt("juggernautXL_v9.safetensors", lora=None), "f")
        await ws.wait_done(bad)
        good = await submit(http, txt2img_prompt("realvisxlV40.safetensors", lora=None), "f")
        await ws.wait_done(good)
    assert (await ws.wait_type("execution_error", bad))["data"]["node_type"] == "CheckpointLoaderSimple"
    await ws.wait_type("execution_success", good)


async def test_unknown_fault_is_refused(http: httpx.AsyncClient) -> None:
    response = await http.post("/sim/faults", json={"explode": True})
    assert response.status_code == 400


async def test_sim_state_reports_gpu_and_queue(sim: SimulatedComfy, http: httpx.AsyncClient) -> None:
    async with WsRecorder(sim.url, "s") as ws:
        await ws.wait_done(await submit(http, txt2img_prompt("juggernautXL_v9.safetensors", lora=None, batch=3), "s"))
    state = (await http.get("/sim/state")).json()
    assert state["loaded_checkpoint"] == "juggernautXL_v9.safetensors" == sim.loaded_checkpoint
    assert state["images_done"] == 3 == sim.images_done
    assert state["queue_running"] == [] and state["queue_pending"] == []
    assert (await http.get("/api/sim/state")).status_code == 404  # simulator-only: no /api mirror
