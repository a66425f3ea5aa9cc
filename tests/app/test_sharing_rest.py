"""Sharing preferences through REST and the Stats tab: the switch, who is pooled, the crowd prior a new
user gets, privacy, persistence and the deployment flag (--share-preferences)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from draftgrid.launch import RunningApp
from draftgrid.ui import DraftGridUI
from learning.models import ArmStat
from learning.recommend.crowd import crowd_prior
from learning.recommend.planner import CrowdEvidence, PolicyConfig
from tests.app.conftest import start_app, wait_done

USERS = tuple((name, f"pw-{name}") for name in ("ann", "bob", "cid", "dan", "eve", "fay"))
PASSWORD = dict(USERS)
PROMPT = "photorealistic portrait of a woman"
CROWD_FAVOURITE = "realisticVisionV60"


@pytest.fixture(scope="module")
def sharing_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    running = start_app(tmp_path_factory.mktemp("sharing"), auth=USERS, share_preferences=True)
    yield running
    running.close()


def client(app: RunningApp, user: str | None) -> httpx.Client:
    auth = (user, PASSWORD[user]) if user else None
    return httpx.Client(base_url=app.local_url.rstrip("/"), auth=auth, timeout=30)


def short(checkpoint: str) -> str:
    return checkpoint.rsplit("/", 1)[-1].rsplit(".", 1)[0]


def review_favourite(c: httpx.Client, favourite: str) -> None:
    """One 12-image draft of PROMPT: every image of `favourite` selected, the rest rejected."""
    ticket = c.post("/api/generate/batch", json={"prompt": PROMPT, "count": 12, "auto_lora": False}).json()
    images = wait_done(c, ticket["batch_id"])["images"]
    picks = {"selected": [i["image_id"] for i in images if short(i["checkpoint"]) == favourite],
             "rejected": [i["image_id"] for i in images if short(i["checkpoint"]) != favourite]}
    assert c.post("/api/feedback", json={"batch_id": ticket["batch_id"], **picks}).status_code == 200


def recommendation(c: httpx.Client) -> dict:
    r = c.get("/api/recommendation", params={"prompt": PROMPT, "tier": "draft", "model_family": "sd15"})
    assert r.status_code == 200, r.text
    return r.json()


def own_evidence(app: RunningApp, user: str, keywords: list[str], pool: list[str]) -> dict[tuple[str, str], ArmStat]:
    return app.backend.store.arm_stats(user, "checkpoint", keywords, pool)


def pooled_of(app: RunningApp, users: list[str], keywords: list[str], pool: list[str]) -> dict[tuple[str, str], ArmStat]:
    """What the pool must hand out for these users: their own evidence (the in-memory aggregates), summed."""
    pooled: dict[tuple[str, str], ArmStat] = {}
    for user in users:
        for key, stat in own_evidence(app, user, keywords, pool).items():
            old = pooled.get(key, ArmStat(0.0, 0.0))
            pooled[key] = ArmStat(old.shown + stat.shown, old.selected + stat.selected)
    return pooled


def expected_prior(app: RunningApp, user: str, others: list[str], keywords: list[str], pool: list[str]) -> dict:
    """The crowd prior `user` must get from `others`' pooled evidence, faded by their own."""
    crowd = CrowdEvidence(pooled_of(app, others, keywords, pool), own_evidence(app, user, keywords, pool))
    prior = crowd_prior(crowd, keywords, pool, PolicyConfig())
    return prior.table() if prior else {}


def sharing_rows(app: RunningApp) -> int:
    return int(app.backend.store.read_sql("SELECT count(*) AS n FROM preference_sharing")["n"][0])


@pytest.mark.parametrize("body", [b'{"share": "yes"}', b'{"share": 1}', b"{}", b'{"share": true, "extra": 1}',
                                  b"[true]", b"not json", b'{"share": null}'])
def test_a_bad_switch_is_422_and_writes_nothing(sharing_app: RunningApp, body: bytes) -> None:
    before = sharing_rows(sharing_app)
    with client(sharing_app, "fay") as fay:
        r = fay.put("/api/preferences/sharing", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 422 and r.json()["detail"]
        assert fay.get("/api/preferences/sharing").json()["share"] is False
    assert sharing_rows(sharing_app) == before


def test_the_switch_needs_credentials_and_is_idempotent(sharing_app: RunningApp) -> None:
    with client(sharing_app, None) as anon:
        assert anon.get("/api/preferences/sharing").status_code == 401
        assert anon.put("/api/preferences/sharing", json={"share": True}).status_code == 401
    with client(sharing_app, "fay") as fay:
        assert fay.get("/api/preferences/sharing").json() == {"share": False, "enabled": True, "changed": False}
        before = sharing_rows(sharing_app)
        assert fay.put("/api/preferences/sharing", json={"share": True}).json() == {
            "share": True, "enabled": True, "changed": True}
        assert fay.put("/api/preferences/sharing", json={"share": True}).json()["changed"] is False
        assert sharing_rows(sharing_app) == before + 1
        assert fay.get("/api/preferences/sharing").json()["share"] is True
        assert fay.put("/api/preferences/sharing", json={"share": False}).json()["changed"] is True
        assert fay.get("/api/preferences/sharing").json()["share"] is False


def test_a_new_user_starts_from_the_opted_in_users_picks_only(sharing_app: RunningApp) -> None:
    with client(sharing_app, "ann") as ann, client(sharing_app, "bob") as bob, client(sharing_app, "cid") as cid, \
            client(sharing_app, "dan") as dan, client(sharing_app, "eve") as eve:
        for c in (bob, cid):
            assert c.put("/api/preferences/sharing", json={"share": True}).status_code == 200
            review_favourite(c, CROWD_FAVOURITE)
        review_favourite(dan, "dreamshaper_8")  # never opts in: never pooled
        sharing_app.backend.store.rebuild_crowd_pool()  # the reviews came after the opt-ins (else: within a minute)

        rec = recommendation(ann)
        keywords, pool = list(rec["evidence"]), list(rec["scores"])  # the prompt's stems, the pool as the app names it
        assert rec["crowd_prior"] and rec["crowd_prior"] == expected_prior(sharing_app, "ann", ["bob", "cid"], keywords, pool)
        assert "crowd prior" in rec["strategy"]["message"]
        assert short(rec["recommended"]) == CROWD_FAVOURITE
        assert all(not row for row in rec["evidence"].values())  # ann's own evidence: none yet
        # privacy: pooled sums only — no other user, batch or image is named anywhere in the answer
        text = str(rec)
        assert not any(name in text for name in ("bob", "cid", "dan", "eve"))
        ticket = ann.post("/api/generate/batch", json={"prompt": PROMPT, "count": 12, "auto_lora": False}).json()
        assert "crowd prior" in ticket["strategy"]["message"]
        wait_done(ann, ticket["batch_id"])

        # bob's own rows are not in his prior: with cid alone left, nothing may be shown ...
        assert recommendation(bob)["crowd_prior"] == {}
        # ... and once eve shares too, his prior is cid's and eve's evidence, never his own
        eve.put("/api/preferences/sharing", json={"share": True})
        review_favourite(eve, "beenyouLite_l15")
        sharing_app.backend.store.rebuild_crowd_pool()
        bob_rec = recommendation(bob)
        assert bob_rec["crowd_prior"] and bob_rec["crowd_prior"] == expected_prior(sharing_app, "bob", ["cid", "eve"],
                                                                                   keywords, pool)


def test_the_stats_tab_switch_reads_and_sets_the_same_choice(sharing_app: RunningApp) -> None:
    ui = DraftGridUI(sharing_app.backend.service)
    request = SimpleNamespace(username="fay")
    box, note = ui.set_sharing(True, request)  # type: ignore[arg-type]
    assert box["value"] is True and box["interactive"] is True and "join the crowd pool" in note
    with client(sharing_app, "fay") as fay:
        assert fay.get("/api/preferences/sharing").json()["share"] is True
        fay.put("/api/preferences/sharing", json={"share": False})
    box, note = ui.sharing(request)  # type: ignore[arg-type]
    assert box["value"] is False and "stay yours alone" in note


def test_the_choice_survives_a_restart_and_without_the_flag_nobody_gets_a_prior(tmp_path: Path) -> None:
    first = start_app(tmp_path, auth=USERS, share_preferences=True)
    try:
        with client(first, "bob") as bob, client(first, "cid") as cid, client(first, "ann") as ann:
            for c in (bob, cid):
                review_favourite(c, CROWD_FAVOURITE)
                c.put("/api/preferences/sharing", json={"share": True})
            assert recommendation(ann)["crowd_prior"]
    finally:
        first.close()
    second = start_app(tmp_path, auth=USERS)  # --share-preferences off
    try:
        with client(second, "bob") as bob, client(second, "ann") as ann:
            assert bob.get("/api/preferences/sharing").json() == {"share": True, "enabled": False, "changed": False}
            rec = recommendation(ann)
            assert rec["crowd_prior"] == {} and "crowd" not in rec["strategy"]["message"]
            assert sorted(rec["allocation"].values()) == [6, 7, 7]  # the plain even cold start of 20
            box, note = DraftGridUI(second.backend.service).sharing(SimpleNamespace(username="bob"))  # type: ignore[arg-type]
            assert box["value"] is True and "does not pool" in note
    finally:
        second.close()
