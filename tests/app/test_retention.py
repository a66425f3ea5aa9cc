"""Image retention: the pure chooser, the disk accounting, one pass over a real store, and the whole
policy on a running app with a tiny budget (selected images, refine parents and outputs stay; a
pruned image answers 410 and is marked in its batch; the aggregates still equal a rebuild)."""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from PIL import Image

from draftgrid.batch_state import BatchState
from draftgrid.image_files import PLACEHOLDER_NAME, ImageFiles
from draftgrid.launch import RunningApp
from draftgrid.retention import MB, Candidate, Retention, RetentionPolicy, choose
from learning.store.preference_store import PreferenceStore
from learning.store.timestamps import utc_now
from tests.app.conftest import start_app, wait_done
from tests.learning.store_builders import add_simple_batch, make_batch, make_image

T0 = datetime(2025, 1, 1)
DAY = timedelta(days=1)


def draft(image_id: str, age_days: float, size: int = 100, *protected: str) -> Candidate:
    return Candidate(image_id, size, T0 - timedelta(days=age_days), tuple(protected))


# ---------------------------------------------------------------------- the pure chooser

def test_over_budget_prunes_the_oldest_unprotected_until_under() -> None:
    candidates = [draft("new", 1), draft("oldest", 5), draft("old", 3), draft("mid", 2)]
    decision = choose(candidates, used=400, budget=250, now=T0, keep_days=30)
    assert decision.prune == ("oldest", "old")
    assert (decision.freed, decision.used_after, decision.over_budget, decision.expired) == (200, 200, False, 0)


def test_under_budget_nothing_goes_and_exactly_at_budget_is_under() -> None:
    candidates = [draft("a", 3), draft("b", 2)]
    assert choose(candidates, used=150, budget=200, now=T0, keep_days=30).prune == ()
    assert choose(candidates, used=200, budget=200, now=T0, keep_days=30).prune == ()
    assert choose(candidates, used=201, budget=200, now=T0, keep_days=30).prune == ("a",)


def test_every_draft_older_than_keep_days_goes_even_under_budget_then_more_for_the_budget() -> None:
    candidates = [draft("ancient", 40), draft("expired", 31), draft("recent", 10), draft("newer", 5)]
    under = choose(candidates, used=400, budget=10_000, now=T0, keep_days=30)
    assert (under.prune, under.expired) == (("ancient", "expired"), 2)
    over = choose(candidates, used=400, budget=150, now=T0, keep_days=30)
    assert (over.prune, over.expired, over.used_after) == (("ancient", "expired", "recent"), 2, 100)


def test_protected_images_are_never_chosen_even_when_the_budget_cannot_be_met() -> None:
    candidates = [draft("selected", 90, 500, "selected"), draft("parent", 80, 500, "refine parent"),
                  draft("standard", 70, 500, "not a draft"), draft("plain", 60, 100), draft("young", 1, 100)]
    decision = choose(candidates, used=1700, budget=200, now=T0, keep_days=30)
    assert decision.prune == ("plain", "young")
    assert decision.over_budget and decision.used_after == 1500 and decision.protected == 3


def test_ties_in_age_are_broken_by_id_so_the_choice_is_repeatable() -> None:
    candidates = [draft("c", 2), draft("a", 2), draft("b", 2)]
    assert choose(candidates, used=300, budget=150, now=T0, keep_days=30).prune == ("a", "b")
    assert choose(reversed(candidates), used=300, budget=150, now=T0, keep_days=30).prune == ("a", "b")


# ---------------------------------------------------------------------- disk accounting

def png(colour: str = "white", size: int = 64) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(out, format="PNG")
    return out.getvalue()


def disk_bytes(data_dir: Path) -> int:
    """What the images and thumbnails use, measured on disk (the placeholder is not an image); a
    file a running pass deletes while this walks counts as gone."""
    total = 0
    for p in [*(data_dir / "images").rglob("*.png"), *(data_dir / "thumbs").glob("*.png")]:
        try:
            total += p.stat().st_size if p.name != PLACEHOLDER_NAME else 0
        except FileNotFoundError:
            pass
    return total


def test_running_total_follows_saves_thumbnails_and_removals_and_a_rescan_agrees(tmp_path: Path) -> None:
    files = ImageFiles(tmp_path)
    assert files.used_bytes() == 0
    files.save("aa01", png("red"))
    files.save("bb02", png("blue"))
    files.thumbnail("aa01", "none")
    files.thumbnail("aa01", "none")  # cached: counted once
    files.thumbnail("aa01", "selected")
    (tmp_path / "images" / "aa" / "aa03.tmp").write_bytes(b"x" * 999)  # an interrupted save
    assert files.used_bytes() == disk_bytes(tmp_path) > 0
    assert ImageFiles(tmp_path).used_bytes() == files.used_bytes()  # the start-up scan
    assert ImageFiles(tmp_path).sizes() == files.sizes()

    freed = files.remove("aa01")
    assert freed == files.sizes().get("aa01", freed) and "aa01" not in files.sizes()
    assert files.used_bytes() == disk_bytes(tmp_path) == files.sizes()["bb02"]
    assert not list((tmp_path / "thumbs").glob("aa01.*"))
    assert files.thumbnail("aa01", "none").name == PLACEHOLDER_NAME  # gone: the placeholder
    assert files.used_bytes() == disk_bytes(tmp_path) == ImageFiles(tmp_path).used_bytes()


# ---------------------------------------------------------------------- one pass on a real store

@pytest.fixture()
def store() -> Iterator[PreferenceStore]:
    with PreferenceStore.open(":memory:") as s:
        yield s


def saved_batch(store: PreferenceStore, files: ImageFiles, batch_id: str, n: int) -> list[str]:
    ids = add_simple_batch(store, batch_id, [f"ck{i}" for i in range(n)])
    for i in ids:
        files.save(i, png(size=32 + len(i)))
    return ids


def test_a_pass_drops_expired_drafts_keeps_protected_ones_and_counts_nothing_twice(
        store: PreferenceStore, tmp_path: Path) -> None:
    files = ImageFiles(tmp_path)
    ids = saved_batch(store, files, "b1", 4)
    store.apply_feedback("alice", "b1", "select", [ids[0]])
    refine = replace(make_batch("r1", count=1), tier="standard", parent_batch_id="b1")
    store.add_batch(refine, [make_image(refine, 0, parent_image_id=ids[1])])
    files.save("r1-0", png())
    totals = store.arm_totals("alice", "checkpoint")
    later = Retention(RetentionPolicy.of(10_000, 30), store, BatchState(store), files,
                      now=lambda: utc_now() + 31 * DAY)
    with later.protecting([ids[2]]):  # a refine of it is being planned
        decision = later.prune()
    assert decision.prune == (ids[3],) and decision.expired == 1 and not decision.over_budget
    assert set(files.sizes()) == {ids[0], ids[1], ids[2], "r1-0"}
    assert files.used_bytes() == disk_bytes(tmp_path)
    assert later.prune().prune == (ids[2],)  # no longer pinned
    assert later.prune().prune == ()
    assert later.pruned_count == 2
    assert store.arm_totals("alice", "checkpoint") == totals and store.aggregates_equal_rebuild()


def test_pinned_images_count_as_protected_and_leftover_files_of_pruned_images_are_deleted(
        store: PreferenceStore, tmp_path: Path) -> None:
    files = ImageFiles(tmp_path)
    ids = saved_batch(store, files, "b1", 3)
    tiny = Retention(RetentionPolicy(max_bytes=1, keep_days=30), store, BatchState(store), files)
    with tiny.protecting([ids[0]]):  # a refine of it is being planned
        assert all(r.protected == () for r in store.retention_rows())  # the store knows nothing of it
        decision = tiny.prune()
    assert decision.prune == tuple(ids[1:]) and decision.over_budget and decision.protected == 1
    assert set(files.sizes()) == {ids[0]}
    files.save(ids[1], png())  # as if the app crashed after the mark, before the delete
    assert tiny.prune().prune == (ids[0],)
    assert files.sizes() == {} and files.used_bytes() == disk_bytes(tmp_path) == 0


# ---------------------------------------------------------------------- the whole policy on a running app

BUDGET_MB = 1
ALICE, BOB = ("alice", "pw-a"), ("bob", "pw-b")


@pytest.fixture()
def tiny_app(tmp_path: Path) -> Iterator[tuple[RunningApp, Path]]:
    running = start_app(tmp_path, max_image_disk_mb=BUDGET_MB, auth=(ALICE, BOB))
    yield running, tmp_path
    running.close()


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.1)


def test_a_tiny_budget_prunes_old_unselected_drafts_and_keeps_everything_else(
        tiny_app: tuple[RunningApp, Path]) -> None:
    app, data_dir = tiny_app
    service = app.backend.service
    store = app.backend.store
    url = app.local_url.rstrip("/")
    with httpx.Client(base_url=url, timeout=30, auth=ALICE) as alice, \
            httpx.Client(base_url=url, timeout=30, auth=BOB) as bob:
        def batch(**body: object) -> dict:
            ticket = alice.post("/api/generate/batch", json={"prompt": "a cat", "session_id": "s1", **body})
            assert ticket.status_code == 200, ticket.text
            return wait_done(alice, ticket.json()["batch_id"])

        first = batch(count=20)
        picks = [i["image_id"] for i in first["images"][:3]]
        assert alice.post("/api/feedback", json={"batch_id": first["batch_id"], "selected": picks}).status_code == 200
        service.gallery_of(service.batch_view("alice", first["batch_id"]))  # thumbnails count too
        refined = batch(prompt="", parent_image_ids=picks[:1], count=1)
        assert refined["status"] == "done" and refined["tier"] == "standard"
        later = [batch(count=20, prompt=f"a dog {n}") for n in range(3)]

        # the passes run by themselves after batches end, a few seconds apart
        wait_until(lambda: disk_bytes(data_dir) <= BUDGET_MB * MB)
        assert service.prune_images().prune == ()  # nothing more to do (and no pass is running now)
        assert service.image_disk()["used_bytes"] == disk_bytes(data_dir)

        kept = [*picks, *(i["image_id"] for i in refined["images"])]
        for image_id in kept:  # selected, the refine parent, the refine output
            r = alice.get(f"/api/images/{image_id}")
            assert r.status_code == 200 and r.content.startswith(b"\x89PNG")

        views = [alice.get(f"/api/batches/{b['batch_id']}").json() for b in (first, *later)]
        images = [i for v in views for i in v["images"]]
        pruned = [i for i in images if i["pruned"]]
        assert pruned and all(i["url"] is None and i["status"] == "done" for i in pruned)
        assert all(i["url"] for i in images if not i["pruned"])
        assert not {i["image_id"] for i in pruned} & set(kept)
        assert {i["image_id"] for i in views[0]["images"] if not i["pruned"]} >= set(picks)

        # oldest first: no kept unprotected draft is older than a pruned one
        created = store.read_sql("SELECT image_id, created_at FROM images").set_index("image_id")["created_at"]
        kept_drafts = [i["image_id"] for i in images if not i["pruned"] and i["image_id"] not in kept]
        if kept_drafts:
            assert max(created[i["image_id"]] for i in pruned) <= min(created[i] for i in kept_drafts)

        gone = pruned[0]["image_id"]
        r = alice.get(f"/api/images/{gone}")
        assert r.status_code == 410
        detail = r.json()["detail"]
        assert gone in detail and f"under {BUDGET_MB} MB" in detail and "seed are kept" in detail
        assert bob.get(f"/api/images/{gone}").status_code == 404  # another user's: unknown
        refine_gone = alice.post("/api/generate/batch", json={"prompt": "", "parent_image_ids": [gone],
                                                              "session_id": "s1"})
        assert refine_gone.status_code == 410 and "cannot be refined" in refine_gone.json()["detail"]
        lineage = alice.get(f"/api/images/{refined['images'][0]['image_id']}/lineage").json()
        assert [i["image_id"] for i in lineage][0] == picks[0] and not lineage[0]["pruned"]

        gallery = service.gallery_of(service.batch_view("alice", views[0]["batch_id"]))
        placeholders = [(p, c) for p, c in gallery if Path(p).name == PLACEHOLDER_NAME]
        assert placeholders and all(c.startswith("removed to save space") for _, c in placeholders)
        assert len(gallery) == len(views[0]["images"])

        assert store.aggregates_equal_rebuild()
        store.rebuild_aggregates()
        assert store.aggregates_equal_rebuild()
