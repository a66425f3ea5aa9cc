"""WebSocket conformance: handshake, per-prompt message order and shapes, routing, previews."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import httpx

from comfy.simulator import SimulatedComfy
from tests.comfy.sim_fixtures import (WsRecorder, assert_same_shape, assert_sequence_like, captured_messages,  # noqa: F401
                                      emptyimage_prompt, fixture, http, sim, start_sim, submit, txt2img_prompt)


async def test_handshake_with_client_id_and_feature_flags(sim: SimulatedComfy) -> None:
    captured = fixture("ws_connect_handshake.json")["with_clientId_and_feature_flags_sent_first"]
    async with WsRecorder(sim.url, "ff-test", {"supports_preview_metadata": True}) as ws:
        await ws.wait_type("feature_flags")
        received = ws.json()
    assert_sequence_like(received, captured_messages(captured["received"]))
    assert received[0]["data"]["sid"] == "ff-test"
    assert received[1]["data"] == captured["received"][1]["json"]["data"]


async def test_handshake_without_client_id_assigns_hex_sid(sim: SimulatedComfy) -> None:
    captured = fixture("ws_connect_handshake.json")["without_clientId_param"]
    async with WsRecorder(sim.url) as ws:
        first = await ws.wait_type("status")
    assert_same_shape(first, captured["received"][0]["json"])
    sid = first["data"]["sid"]
    assert len(sid) == 32 and int(sid, 16) >= 0


async def test_emptyimage_sequence_and_history(sim: SimulatedComfy, http: httpx.AsyncClient) -> None:
    captured = fixture("ws_sequence_emptyimage.json")
    async with WsRecorder(sim.url, "client-e") as ws:
        await ws.wait_type("status")
        prompt_id = await submit(http, captured["prompt"], "client-e")
        await ws.wait_done(prompt_id)
        assert_sequence_like(ws.json(), captured_messages(captured["messages"]))
        executed = await ws.wait_type("executed", prompt_id)
    assert executed["data"]["output"] == {"images": [
        {"filename": "emptyimage_00001_.png", "subfolder": "fixture", "type": "output"},
        {"filename": "emptyimage_00002_.png", "subfolder": "fixture", "type": "output"}]}
    history = (await http.get(f"/history/{prompt_id}")).json()
    assert_same_shape(history[prompt_id], next(iter(fixture("history_prompt_emptyimage.json")["json"].values())))
    assert history[prompt_id]["outputs"]["2"] == executed["data"]["output"]


async def test_txt2img_cold_then_warm_run(sim: SimulatedComfy, http: httpx.AsyncClient) -> None:
    cold, warm = fixture("ws_sequence_txt2img_lora.json")["runs"]
    async with WsRecorder(sim.url, "client-cold") as ws:
        await ws.wait_type("status")
        prompt_id = await submit(http, txt2img_prompt(seed=42), "client-cold")
        await ws.wait_done(prompt_id)
        assert_sequence_like(ws.json(), captured_messages(cold["messages"]))
    history = (await http.get(f"/history/{prompt_id}")).json()
    assert_same_shape(history[prompt_id], next(iter(fixture("history_prompt_txt2img_lora.json")["json"].values())))
    async with WsRecorder(sim.url, "client-warm") as ws:
        await ws.wait_type("status")
        prompt_id = await submit(http, txt2img_prompt(seed=43), "client-warm")
        await ws.wait_done(prompt_id)
        assert_sequence_like(ws.json(), captured_messages(warm["messages"]))
        cached = await ws.wait_type("execution_cached", prompt_id)
        executed = await ws.wait_type("executed", prompt_id)
    assert cached["data"]["nodes"] == ["1", "2", "3", "4", "5"]
    assert [i["filename"] for i in executed["data"]["output"]["images"]] == ["tiny_txt2img_00003_.png",
                                                                            "tiny_txt2img_00004_.png"]


async def test_identical_resubmit_is_fully_cached(sim: SimulatedComfy, http: httpx.AsyncClient) -> None:
    captured = fixture("ws_sequence_emptyimage_cached_resubmit.json")
    async with WsRecorder(sim.url, "first") as first:
        await first.wait_done(await submit(http, emptyimage_prompt(), "first"))
    async with WsRecorder(sim.url, "second") as ws:
        await ws.wait_type("status")
        files_before = sorted(p.name for p in (sim.files.root / "output" / "fixture").iterdir())
        prompt_id = await submit(http, emptyimage_prompt(), "second")
        await ws.wait_done(prompt_id)
        assert_sequence_like(ws.json(), captured_messages(captured["messages"]))
        executed = await ws.wait_type("executed", prompt_id)
    assert [i["filename"] for i in executed["data"]["output"]["images"]] == ["emptyimage_00001_.png",
                                                                            "emptyimage_00002_.png"]
    assert sorted(p.name for p in (sim.files.root / "output" / "fixture").iterdir()) == files_before
    history = (await http.get(f"/history/{prompt_id}")).json()
    assert_same_shape(history[prompt_id],
                      next(iter(fixture("history_prompt_emptyimage_cached.json")["json"].values())))


async def test_messages_are_routed_by_client_id(sim: SimulatedComfy, http: httpx.AsyncClient) -> None:
    captured = fixture("ws_routing_by_client_id.json")
    async with WsRecorder(sim.url, "observer-A") as a, WsRecorder(sim.url, "submitter-B") as b:
        await a.wait_type("status")
        await b.wait_type("status")
        prompt_id = await submit(http, emptyimage_prompt(prefix="fixture/routing_b"), "submitter-B")
        await b.wait_done(prompt_id)
        await a.wait_count(len(captured["phase1_messages_seen_by_A"]))
        assert_sequence_like(b.json(), captured_messages(captured["phase1_messages_seen_by_B"]))
        assert_sequence_like(a.json(), captured_messages(captured["phase1_messages_seen_by_A"]))
        seen_a, seen_b = len(a.json()), len(b.json())
        await submit(http, emptyimage_prompt(color=1, prefix="fixture/routing_none"))
        phase2 = captured_messages(captured["phase2_messages_seen_by_A"])
        await a.wait_count(seen_a + len(phase2))
        await b.wait_count(seen_b + len(phase2))
        assert_sequence_like(a.json()[seen_a:], phase2)
        assert_sequence_like(b.json()[seen_b:], captured_messages(captured["phase2_messages_seen_by_B"]))


async def test_execution_error_from_failing_checkpoint(sim: SimulatedComfy, http: httpx.AsyncClient) -> None:
    captured = fixture("ws_sequence_execution_error.json")
    sim.faults.fail_checkpoints = {"dreamshaper_8.safetensors"}
    async with WsRecorder(sim.url, "client-err") as ws:
        await ws.wait_type("status")
        prompt_id = await submit(http, captured["prompt"], "client-err")
        await ws.wait_done(prompt_id)
        assert_sequence_like(ws.json(), captured_messages(captured["messages"]))
        error = (await ws.wait_type("execution_error", prompt_id))["data"]
    assert error["node_id"] == "4" and error["node_type"] == "CheckpointLoaderSimple"
    assert error["exception_type"] == "RuntimeError" and "dreamshaper_8.safetensors" in error["exception_message"]
    assert error["current_inputs"] == {"ckpt_name": ["dreamshaper_8.safetensors"]}
    history = (await http.get(f"/history/{prompt_id}")).json()[prompt_id]
    assert_same_shape(history, next(iter(fixture("history_prompt_execution_error.json")["json"].values())))
    assert history["status"]["status_str"] == "error" and history["status"]["completed"] is False


def preview_run(label: str) -> dict:
    return next(r for r in fixture("ws_sequence_txt2img_previews.json")["runs"] if r["label"] == label)


def binary_positions(messages: list[dict]) -> list[int]:
    """Index of each binary frame among the messages (JSON ones and binary ones)."""
    relevant = [m for m in messages if "binary" in m or "json" in m]
    return [i for i, m in enumerate(relevant) if "binary" in m]


async def test_preview_frames_legacy_then_with_metadata(tmp_path: Path) -> None:
    """The capture's two runs on one server: type-1 frames (cold run), then type-4 frames (warm run)."""
    server = await start_sim(tmp_path, previews=True)
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            legacy = preview_run("previews_legacy")
            async with WsRecorder(server.url, "legacy") as ws:
                await ws.wait_type("status")
                await ws.wait_done(await submit(client, txt2img_prompt(seed=1), "legacy"))
            assert_sequence_like(ws.json(), captured_messages(legacy["messages"]))
            assert [i for i, m in enumerate(ws.messages) if isinstance(m, bytes)] == binary_positions(legacy["messages"])
            for frame in ws.binary():
                assert struct.unpack(">II", frame[:8]) == (1, 1) and frame[8:10] == b"\xff\xd8"

            with_metadata = preview_run("previews_with_metadata")
            async with WsRecorder(server.url, "meta", {"supports_preview_metadata": True}) as ws:
                await ws.wait_type("feature_flags")
                prompt_id = await submit(client, txt2img_prompt(seed=2), "meta")
                await ws.wait_done(prompt_id)
            assert_sequence_like(ws.json(), captured_messages(with_metadata["messages"]))
            assert [i for i, m in enumerate(ws.messages) if isinstance(m, bytes)] == binary_positions(
                with_metadata["messages"])
            captured_meta = next(m for m in with_metadata["messages"] if m.get("binary"))["metadata"]
            for frame in ws.binary():
                event, length = struct.unpack(">II", frame[:8])
                metadata = json.loads(frame[8:8 + length])
                assert event == 4 and frame[8 + length:10 + length] == b"\xff\xd8"
                assert_same_shape(metadata, captured_meta)
                assert metadata["node_id"] == "6" and metadata["prompt_id"] == prompt_id
    finally:
        await server.stop()


async def test_no_preview_frames_by_default(sim: SimulatedComfy, http: httpx.AsyncClient) -> None:
    async with WsRecorder(sim.url, "plain", {"supports_preview_metadata": True}) as ws:
        await ws.wait_type("feature_flags")
        await ws.wait_done(await submit(http, txt2img_prompt(), "plain"))
    assert ws.binary() == []
