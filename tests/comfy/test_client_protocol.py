"""Parsing of captured server answers: inventories in both combo formats, history entries,
preview frames, hostile names."""

from __future__ import annotations

import json
import struct

import pytest

from comfy.errors import ComfyExecutionError, ComfyInterrupted, ComfyProtocolError
from comfy.protocol import (
    check_file_name,
    combo_options,
    decode_preview,
    history_failure,
    history_image_refs,
    parse_inventory,
    parse_queue,
    parse_system_stats,
)

from .conftest import fixture


def test_inventory_from_captured_object_info_keeps_subfolder_names() -> None:
    info = fixture("object_info_txt2img_nodes.json")
    inventory = parse_inventory(info)
    assert "tinySD15_random.safetensors" in inventory.checkpoints
    assert len(inventory.checkpoints) == 7
    assert "xl/detail_tweaker_xl.safetensors" in inventory.loras
    assert inventory.samplers[0] == "euler" and "dpmpp_2m" in inventory.samplers
    assert "karras" in inventory.schedulers


def test_both_combo_formats() -> None:
    v3 = fixture("object_info_v3_combo_examples.json")
    assert combo_options(v3["LatentCut"]["input"]["required"]["dim"]) == ["x", "y", "t"]
    assert combo_options(v3["BasicScheduler"]["input"]["required"]["scheduler"])[:2] == ["simple", "sgm_uniform"]
    assert combo_options(["INT", {"default": 1}]) == []
    assert combo_options(["COMBO", {"image_upload": True}]) == []  # remote combo: no static options
    v3_style = {
        "CheckpointLoaderSimple": {"input": {"required": {"ckpt_name": ["COMBO", {"options": ["a.safetensors"]}]}}},
        "LoraLoader": {"input": {"required": {"lora_name": ["COMBO", {"options": ["sub/l.safetensors"]}]}}},
        "KSampler": {"input": {"required": {"sampler_name": ["COMBO", {"options": ["euler"]}],
                                            "scheduler": [["normal"]]}}},
    }
    inventory = parse_inventory(v3_style)
    assert inventory.checkpoints == ("a.safetensors",)
    assert inventory.loras == ("sub/l.safetensors",)
    assert (inventory.samplers, inventory.schedulers) == (("euler",), ("normal",))


def test_history_outputs_and_outcomes() -> None:
    entry = fixture("history_prompt_txt2img_lora.json")["json"]["2c513817-c056-4c22-8139-b286b1e386c0"]
    refs = history_image_refs(entry)
    assert [(r.filename, r.node_id, r.batch_index) for r in refs] == [
        ("tiny_txt2img_00001_.png", "8", 0), ("tiny_txt2img_00002_.png", "8", 1)]
    assert history_failure("x", entry) is None
    failed = fixture("history_prompt_execution_error.json")["json"]
    [(pid, failed_entry)] = failed.items()
    error = history_failure(pid, failed_entry)
    assert isinstance(error, ComfyExecutionError)
    assert error.node_type == "CheckpointLoaderSimple" and "Could not detect model type" in str(error)
    interrupted = {"status": {"status_str": "error", "messages": [
        ["execution_interrupted", {"node_id": "6", "node_type": "KSampler"}]]}}
    assert isinstance(history_failure("p", interrupted), ComfyInterrupted)


@pytest.mark.parametrize("name", ["../secret.png", "/etc/passwd", "a/../../b.png", "C:\\x.png", "..\\x.png", "a\x00b"])
def test_hostile_names_are_refused(name: str) -> None:
    with pytest.raises(ComfyProtocolError):
        check_file_name(name, "file name")


def test_hostile_name_inside_history_is_refused() -> None:
    entry = {"outputs": {"9": {"images": [{"filename": "../../x.png", "subfolder": "", "type": "output"}]}}}
    with pytest.raises(ComfyProtocolError, match="hostile"):
        history_image_refs(entry)
    assert check_file_name("xl/sub/ok_00001_.png", "file name") == "xl/sub/ok_00001_.png"


def test_preview_frames_of_both_types() -> None:
    legacy = decode_preview(struct.pack(">II", 1, 2) + b"PNGDATA")
    assert legacy is not None and (legacy.image, legacy.mime, legacy.prompt_id) == (b"PNGDATA", "image/png", None)
    meta = json.dumps({"node_id": "6", "prompt_id": "p1", "image_type": "image/jpeg"}).encode()
    typed = decode_preview(struct.pack(">II", 4, len(meta)) + meta + b"JPEG")
    assert typed is not None and (typed.image, typed.prompt_id, typed.node_id) == (b"JPEG", "p1", "6")
    assert decode_preview(struct.pack(">II", 3, 0) + b"text") is None  # other binary events are ignored
    with pytest.raises(ComfyProtocolError):
        decode_preview(b"\x00\x00")
    with pytest.raises(ComfyProtocolError):
        decode_preview(struct.pack(">II", 4, 999) + b"{}")


def test_system_stats_and_queue() -> None:
    stats = parse_system_stats(fixture("system_stats.json")["json"])
    assert (stats.comfyui_version, stats.device, stats.vram_total) == ("0.3.64", "cpu", 25276502016)
    busy = fixture("queue_interrupt_free.json")["steps"][0]["json"]
    queue = parse_queue(busy)
    assert queue.running == ("54d396cb-a56d-40ad-a093-575264d93df6",)
    assert len(queue.pending) == 2
    assert parse_queue(fixture("queue_idle.json")["json"]).running == ()
    with pytest.raises(ComfyProtocolError):
        parse_queue({"queue_running": "nope"})
    with pytest.raises(ComfyProtocolError):
        parse_system_stats({"devices": []})


def test_check_png_refuses_what_save_image_never_sends() -> None:
    import io

    from PIL import Image

    from comfy.protocol import check_png

    good = io.BytesIO()
    Image.new("RGB", (64, 48)).save(good, format="PNG")
    check_png(good.getvalue(), "ok.png", max_pixels=64 * 48)
    with pytest.raises(ComfyProtocolError, match="not a PNG"):
        check_png(b"<html>nope</html>", "x.png", max_pixels=10**6)
    with pytest.raises(ComfyProtocolError, match="corrupt"):
        check_png(good.getvalue()[:60], "cut.png", max_pixels=10**6)
    with pytest.raises(ComfyProtocolError, match="over the"):
        check_png(good.getvalue(), "big.png", max_pixels=64 * 47)
