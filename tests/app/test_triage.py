"""Keyboard triage's server side (issue 13): the queued actions applied through the facade in order,
the viewer's HTML, short checkpoint names and why each LoRA was chosen."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timezone

import gradio as gr
import httpx
import pytest

from draftgrid.launch import RunningApp
from draftgrid.ui import DraftGridUI
from draftgrid.ui_triage import SHORTCUTS, TriagePanel, page_js, shortcut_sheet
from draftgrid.ui_viewer import viewer_html
from draftgrid.views import short_checkpoint, short_names
from learning.keywords import parse_prompt
from learning.lora import lora_reason
from learning.models import DEFAULT_USER, LoraInfo
from tests.app.conftest import wait_done


@pytest.mark.parametrize(("name", "short"), [
    ("realisticVisionV60.safetensors", "realisticVisionV60"),
    ("juggernautXL_v9.safetensors", "juggernautXL"),
    ("sdxl/epicrealismXL_pureFix.safetensors", "epicrealismXL"),
    ("sd3.5_medium_incl_clips_t5xxlfp8scaled.safetensors", "sd3.5"),
    ("v2-1_768-ema-pruned.safetensors", "v2-1"),
    ("sd_xl_base_1.0.safetensors", "sd_xl_base_1.0"),  # "sd" alone says nothing
    ("flux1-dev-fp8.safetensors", "flux1-dev-fp8"),
])
def test_short_checkpoint_names(name: str, short: str) -> None:
    assert short_checkpoint(name) == short


def test_short_names_in_a_message_cut_the_longer_name_first() -> None:
    text = "Explore: juggernautXL_v9.safetensors ×7, juggernautXL_v9.safetensors.bak"
    assert short_names(text, ["juggernautXL_v9.safetensors", ""]) == "Explore: juggernautXL ×7, juggernautXL.bak"


LORAS = [
    LoraInfo("anime_style_v2.safetensors", "sd15", tags=("1girl", "cherry blossoms"), tag_shares=(1.0, 0.5),
             trigger_words=("anmstyle",)),
    LoraInfo("detail_tweaker.safetensors", "sd15", tags=("lighthouse",), tag_shares=(1.0,)),
]


@pytest.mark.parametrize(("prompt", "lora", "why"), [
    ("anime girl", "anime_style_v2.safetensors", "'anime' matched its file name 'anime'; 'girl' matched its tag '1girl'; adds its trigger word 'anmstyle'"),
    ("a lighthouse", "detail_tweaker.safetensors", "'lighthouse' matched its tag 'lighthouse'"),
    ("a cat <lora:detail_tweaker:0.7>", "detail_tweaker.safetensors", "your <lora:detail_tweaker:0.7> tag"),
    ("anmstyle portrait", "anime_style_v2.safetensors", "'anmstyle' matched its trigger word 'anmstyle'"),
    ("a cat", "detail_tweaker.safetensors", "no keyword match: chosen from what you selected before"),
    ("a cat", "gone.safetensors", "not on the servers any more"),
])
def test_lora_reason_says_what_matched(prompt: str, lora: str, why: str) -> None:
    assert lora_reason(parse_prompt(prompt), lora, LORAS) == why


def test_every_shortcut_is_in_the_sheet_and_the_page_script() -> None:
    script, sheet = page_js(), shortcut_sheet()
    assert "__DG_KEYMAP__" not in script
    keymap = json.loads(script.split("const KEYMAP = ", 1)[1].split(";\n", 1)[0])
    for keys, command, what in SHORTCUTS:
        assert what in sheet
        assert all(keymap[key] == command for key in keys)
        assert f"  {command}: " in script, f"triage.js has no command {command}"


# ---------------------------------------------------------------- against a running app


@pytest.fixture()
def batch(client: httpx.Client, generate) -> dict:  # noqa: ANN001
    ticket = generate(prompt="a lighthouse at dusk", count=6)
    return wait_done(client, ticket["batch_id"])


@pytest.fixture()
def panel(app: RunningApp) -> TriagePanel:
    service = app.backend.service
    return TriagePanel(service, DraftGridUI(service)._review)


def send(panel: TriagePanel, batch_id: str, *actions: dict, viewing: str | None = None,
         compare: dict | None = None) -> tuple:
    payload = {"actions": list(actions), "viewing": viewing, "compare": compare}
    return panel.apply(batch_id, json.dumps(payload), None)  # type: ignore[arg-type]


def marks(client: httpx.Client, batch_id: str) -> dict[str, list[str]]:
    images = client.get(f"/api/batches/{batch_id}").json()["images"]
    return {field: sorted(i["image_id"] for i in images if i[field]) for field in ("selected", "rejected", "favourite")}


def test_actions_apply_in_the_order_they_were_made(panel: TriagePanel, client: httpx.Client, batch: dict) -> None:
    ids = [i["image_id"] for i in batch["images"]]
    bid = batch["batch_id"]
    send(panel, bid, {"op": "toggle", "image": ids[0]}, {"op": "toggle", "image": ids[1]},
         {"op": "toggle", "image": ids[0]}, {"op": "reject", "image": ids[2]}, {"op": "favourite", "image": ids[3]})
    assert marks(client, bid) == {"selected": sorted([ids[1], ids[3]]), "rejected": [ids[2]], "favourite": [ids[3]]}
    send(panel, bid, {"op": "favourite", "image": ids[3]}, {"op": "reject", "image": ids[2]})  # un-favourite; a repeat
    assert marks(client, bid) == {"selected": sorted([ids[1], ids[3]]), "rejected": [ids[2]], "favourite": []}
    send(panel, bid, {"op": "select_all"})
    assert marks(client, bid) == {"selected": sorted(ids), "rejected": [], "favourite": []}
    send(panel, bid, {"op": "clear"}, {"op": "clear"})
    assert marks(client, bid) == {"selected": [], "rejected": [], "favourite": []}


def test_a_toggle_is_the_clicks_toggle(panel: TriagePanel, app: RunningApp, client: httpx.Client,
                                       batch: dict) -> None:
    """The gallery's click toggles the index-th finished image; the key names the same image."""
    ids = [i["image_id"] for i in batch["images"]]
    send(panel, batch["batch_id"], {"op": "toggle", "image": ids[4]})
    app.backend.service.toggle(DEFAULT_USER, batch["batch_id"], 4)  # the same thumbnail clicked
    assert marks(client, batch["batch_id"])["selected"] == []


def test_answers_the_grid_the_selection_and_the_viewer(panel: TriagePanel, batch: dict) -> None:
    ids = [i["image_id"] for i in batch["images"]]
    gallery, selection, viewer, compare = send(panel, batch["batch_id"], {"op": "toggle", "image": ids[2]},
                                               viewing=ids[2])
    assert len(gallery["value"]) == 6 and "✓ selected" in gallery["value"][2][1]
    assert "1 selected" in selection
    assert f"data-image-id='{ids[2]}'" in viewer and "3 / 6 · ✓ selected" in viewer
    assert compare == gr.skip()  # no compare open


def test_compare_opens_after_the_marks_before_it_and_keeps_its_panes(panel: TriagePanel, client: httpx.Client,
                                                                   batch: dict) -> None:
    """`Space l c`: the compare's panes are chosen after the toggle queued before it; its later
    answers show the same panes (with their marks) whatever the selection became; a pick selects,
    a second pick keeps it selected."""
    ids, bid = [i["image_id"] for i in batch["images"]], batch["batch_id"]
    *_, compare = send(panel, bid, {"op": "toggle", "image": ids[0]}, {"op": "view"},
                       compare={"token": 7, "around": ids[1], "ids": None})
    assert "data-token='7' data-count='2'" in compare
    assert compare.index(f"data-image-id='{ids[0]}' data-state='selected'") < compare.index(
        f"data-image-id='{ids[1]}' data-state='none'")
    for _ in range(2):
        *_, compare = send(panel, bid, {"op": "pick", "image": ids[1]}, compare={"token": 7, "ids": ids[:2]})
        assert f"data-image-id='{ids[1]}' data-state='selected'" in compare
    assert marks(client, bid) == {"selected": sorted(ids[:2]), "rejected": [], "favourite": []}
    *_, compare = send(panel, bid, {"op": "toggle", "image": ids[2]}, compare={"token": 7, "ids": ids[:2]})
    assert "data-count='2'" in compare and ids[2] not in compare  # the panes stay as they opened
    *_, compare = send(panel, bid, {"op": "view"}, compare={"token": 8, "around": ids[5], "ids": None})
    assert "data-count='4'" in compare and ids[5] in compare  # three selected and the focused one


def test_an_unknown_image_or_a_bad_payload_writes_nothing(panel: TriagePanel, client: httpx.Client,
                                                         batch: dict) -> None:
    bid = batch["batch_id"]
    send(panel, bid, {"op": "toggle", "image": "f" * 32}, {"op": "view"})
    _, selection, _, _ = panel.apply(bid, json.dumps({"actions": [{"op": "explode"}]}), None)  # type: ignore[arg-type]
    assert "dg-error" in selection and "op" in selection
    assert marks(client, bid) == {"selected": [], "rejected": [], "favourite": []}


def test_another_users_batch_is_refused(panel: TriagePanel, app: RunningApp, batch: dict) -> None:
    class Someone:  # a logged-in other user, as Gradio's request carries them
        username = "mallory"
        session_hash = "m"
    ids = [i["image_id"] for i in batch["images"]]
    payload = {"actions": [{"op": "toggle", "image": ids[0]}], "compare": {"token": 3, "around": ids[0]}}
    _, selection, _, compare = panel.apply(batch["batch_id"], json.dumps(payload), Someone())  # type: ignore[arg-type]
    assert "not found" in selection
    assert "data-token='3' data-count='0'" in compare and "not found" in compare  # the page lets its keys go
    assert app.backend.service.batch_view(DEFAULT_USER, batch["batch_id"]).images[0].state == "none"


def test_viewer_shows_what_made_the_image(app: RunningApp, batch: dict) -> None:
    view = app.backend.service.batch_view(DEFAULT_USER, batch["batch_id"])
    image = view.images[1]
    page = viewer_html(view, image.record.image_id, {"x.safetensors": "because"})
    r = image.record
    for fact in (r.checkpoint, f"{r.seed} · batch index {r.batch_index}", r.sampler_name, r.scheduler,
                 f"<td>{r.steps}</td>", f"{r.width} × {r.height}", "draft", r.server or "", "a first draft",
                 f"/api/images/{r.image_id}", "2 / 6"):
        assert fact in page
    assert viewer_html(view, "f" * 32) == ""
    pruned = replace(view, images=(replace(image, record=replace(r, pruned_at=datetime.now(timezone.utc))),))
    shown = viewer_html(pruned, r.image_id)
    assert "removed to save space" in shown and "/api/images/" not in shown
