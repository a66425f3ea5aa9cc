"""LoRA sets, CFG and the user's rules through REST on a real app + simulator: cells respect the
family and the batch size, explicit settings win, vetoes are honoured, the recommendation says why."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import httpx

from draftgrid.launch import RunningApp

from draftgrid.ui import DraftGridUI
from learning.recommend.combinations import cfg_candidates
from tests.app.conftest import wait_done


def _loras_by_name(client: httpx.Client) -> dict[str, dict]:
    return {lora["name"]: lora for lora in client.get("/api/loras").json()}


def test_explore_cells_keep_the_batch_size_the_family_and_the_tier_cfgs(client: httpx.Client,
                                                                        generate: Callable[..., dict]) -> None:
    ticket = generate(prompt="anime girl in a fantasy landscape", count=12, model_family="sd15", tier="draft",
                      explore_mode=True, auto_lora=True)
    batch = wait_done(client, ticket["batch_id"])
    assert len(batch["images"]) == 12 == ticket["total_count"]
    known = _loras_by_name(client)
    for image in batch["images"]:
        assert all(known[lora["name"]]["base_model"] in ("sd15", None) for lora in image["loras"])
        assert image["cfg"] in cfg_candidates("sd15", 7.0)
    assert "LoRA set:" in ticket["strategy"]["message"]


def test_an_explicit_cfg_is_never_overridden(client: httpx.Client, generate: Callable[..., dict]) -> None:
    ticket = generate(prompt="anime girl", count=8, model_family="sd15", tier="draft", explore_mode=True, cfg=11.5)
    batch = wait_done(client, ticket["batch_id"])
    assert {image["cfg"] for image in batch["images"]} == {11.5}
    assert "CFG: the user's" in ticket["strategy"]["message"]


def test_a_veto_is_honoured_and_put_replaces_the_vetoes(client: httpx.Client, generate: Callable[..., dict]) -> None:
    veto = {"keyword": "anime", "lora": "anime_style_v2.safetensors"}
    r = client.put("/api/loras/vetoes", json={"rules": [veto]})
    assert r.status_code == 200, r.text
    assert client.get("/api/loras/vetoes").json() == {"rules": [veto]}
    for _ in range(2):
        ticket = generate(prompt="anime girl with a sword", count=12, model_family="sd15", explore_mode=True)
        batch = wait_done(client, ticket["batch_id"])
        assert all(lora["name"] != veto["lora"] for image in batch["images"] for lora in image["loras"])
    assert client.put("/api/loras/vetoes", json={"rules": []}).json() == {"rules": []}
    assert client.put("/api/loras/vetoes", json={"rules": [{"keyword": "anime"}]}).status_code == 422


def test_dismissed_negative_terms_round_trip(client: httpx.Client) -> None:
    body = {"rules": [{"keyword": "portraits", "term": "blurry"}]}
    assert client.put("/api/negative-suggestions/dismissed", json=body).json() == {
        "rules": [{"keyword": "portrait", "term": "blurry"}]}  # stored under the stem


def test_the_recommendation_returns_settings_and_negative_suggestions(client: httpx.Client) -> None:
    rec = client.get("/api/recommendation", params={"prompt": "anime girl", "model_family": "sd15",
                                                   "tier": "draft", "negative_prompt": "blurry"}).json()
    assert set(rec["settings"]) == {"lora_set", "cfg", "negative_suggestions"}
    assert rec["settings"]["lora_set"]["arm"].startswith("sd15|")
    assert rec["settings"]["cfg"]["arm"].rsplit("@", 1)[1] in {f"{v:.1f}" for v in cfg_candidates("sd15", 7.0)}



def test_the_ui_vetoes_a_lora_of_the_shown_batch_and_adds_a_chip_only_on_click(
        app: RunningApp, client: httpx.Client, generate: Callable[..., dict]) -> None:
    ui = DraftGridUI(app.backend.service)
    ticket = generate(prompt="anime girl <lora:anime_style_v2:0.7>", count=4, model_family="sd15", explore_mode=True)
    wait_done(client, ticket["batch_id"])
    choices = dict(ui.veto_choices(ticket["batch_id"], None)["choices"])
    label = "never use anime_style_v2 for 'anime'"
    assert choices[label] == "anime\tanime_style_v2.safetensors"
    assert "is vetoed" in ui.veto(choices[label], None)
    assert {"keyword": "anime", "lora": "anime_style_v2.safetensors"} in client.get("/api/loras/vetoes").json()["rules"]
    client.put("/api/loras/vetoes", json={"rules": []})
    assert ui.add_negative("lowres", "blurry,") == "blurry, lowres" and ui.add_negative("lowres", "") == "lowres"


def test_a_refine_takes_the_learnt_cfg_unless_the_user_sets_one(client: httpx.Client,
                                                                 generate: Callable[..., dict]) -> None:
    ticket = generate(prompt="a zeppelin over the harbour", count=20, model_family="sd15", tier="draft",
                      explore_mode=True, auto_lora=False)
    images = wait_done(client, ticket["batch_id"])["images"]
    counts = Counter(image["cfg"] for image in images if image["cfg"] != 7.0)  # 7: the tiers' default
    wanted = counts.most_common(1)[0][0]  # 5 or 9: an Explore batch of 20 spreads over the levels
    liked = [image["image_id"] for image in images if image["cfg"] == wanted]
    others = [image["image_id"] for image in images if image["cfg"] != wanted]
    feedback = client.post("/api/feedback", json={"batch_id": ticket["batch_id"], "selected": liked,
                                                  "rejected": others})
    assert feedback.status_code == 200, feedback.text
    learnt = client.post("/api/generate/batch", json={"parent_image_ids": liked[:1]})
    explicit = client.post("/api/generate/batch", json={"parent_image_ids": liked[:1], "cfg": 6.5})
    assert learnt.status_code == explicit.status_code == 200, (learnt.text, explicit.text)
    [refined] = wait_done(client, learnt.json()["batch_id"])["images"]
    assert refined["cfg"] == wanted  # not the sd15 standard tier's 7: the picks taught another
    [chosen] = wait_done(client, explicit.json()["batch_id"])["images"]
    assert chosen["cfg"] == 6.5
