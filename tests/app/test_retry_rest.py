"""POST /api/batches/{id}/retry: the failed images of an ended batch made again, same seeds and
settings, as a new batch — after a simulator fault, after a cancel, and after a restart."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from comfy.models import LoraSpec
from comfy.simulator import TimeModel
from draftgrid.errors import InvalidRequest, NotFound
from draftgrid.launch import RunningApp
from draftgrid.planning import RenderSettings
from draftgrid.retry_planner import consecutive_runs, plan_retry
from learning.models import ImageRecord, JobRecord
from tests.app.conftest import client_of, start_app, wait_done

DREAMSHAPER = "dreamshaper_8.safetensors"  # one of the sd15 draft checkpoints of the simulator
SAME = ("checkpoint", "loras", "seed", "batch_index", "width", "height", "steps", "cfg", "sampler_name",
        "scheduler", "parent_image_id")
ANN, BOB = ("ann", "ann-pass"), ("bob", "bob-pass")


def servers(app: RunningApp) -> list:
    assert app.backend.simulator is not None
    return app.backend.simulator.servers


def made_again(failed: dict, retried: dict) -> None:
    """Every failed image of `failed` is made again in `retried`, done, with its seed and settings."""
    def settings(images: list[dict]) -> list[str]:
        return sorted(repr({k: i[k] for k in SAME}) for i in images)

    lost = [i for i in failed["images"] if i["status"] == "failed"]
    assert lost and len(retried["images"]) == len(lost)
    assert all(i["status"] == "done" and i["url"] for i in retried["images"]), [i["error"] for i in retried["images"]]
    assert settings(retried["images"]) == settings(lost)
    assert retried["prompt"] == failed["prompt"] and retried["tier"] == failed["tier"]


def test_retry_after_a_fault_a_cancel_and_a_restart(tmp_path: Path) -> None:
    data = tmp_path
    app = start_app(data, auth=(ANN, BOB))
    try:
        with client_of(app) as anon:
            ann, bob = httpx.Client(base_url=anon.base_url, auth=ANN, timeout=30), \
                httpx.Client(base_url=anon.base_url, auth=BOB, timeout=30)
            for server in servers(app):
                server.faults.fail_checkpoints = {DREAMSHAPER}
            ticket = ann.post("/api/generate/batch", json={"prompt": "a lighthouse at dusk", "count": 12,
                                                           "tier": "draft", "seed": 5}).json()
            assert DREAMSHAPER in ticket["checkpoint_distribution"]
            failed = wait_done(ann, ticket["batch_id"])
            assert failed["status"] == "partial"
            assert {i["checkpoint"] for i in failed["images"] if i["status"] == "failed"} == {DREAMSHAPER}

            assert bob.post(f"/api/batches/{ticket['batch_id']}/retry").status_code == 404  # not his
            assert ann.post("/api/batches/nope/retry").status_code == 404
            for server in servers(app):
                server.faults.fail_checkpoints = set()
            retry = ann.post(f"/api/batches/{ticket['batch_id']}/retry")
            assert retry.status_code == 200, retry.text
            body = retry.json()
            assert body["retry_of"] == ticket["batch_id"] and body["batch_id"] != ticket["batch_id"]
            assert body["total_count"] == ticket["checkpoint_distribution"][DREAMSHAPER]
            assert body["checkpoint_distribution"] == {DREAMSHAPER: body["total_count"]}
            made_again(failed, wait_done(ann, body["batch_id"]))
            done = ann.post(f"/api/batches/{body['batch_id']}/retry")  # nothing failed there
            assert done.status_code == 422 and "no failed image" in done.json()["detail"]
            service = app.backend.service  # the facade says the same to the UI
            with pytest.raises(NotFound):
                service.retry_failed("bob", ticket["batch_id"])
            with pytest.raises(InvalidRequest, match="no failed image"):
                service.retry_failed("ann", body["batch_id"])
            again = service.retry_failed("ann", ticket["batch_id"])  # a second retry of the same failures
            assert again.checkpoint_distribution == body["checkpoint_distribution"]
            made_again(failed, wait_done(ann, again.batch_id))

            # a batch still running is refused; once stopped, its cancelled images can be retried
            slow = [server.time_model for server in servers(app)]
            for server in servers(app):
                server.time_model = TimeModel(checkpoint_load={"sd15": 60.0}, step_seconds=10.0)
            running = ann.post("/api/generate/batch", json={"prompt": "a red fox", "count": 4, "seed": 9}).json()
            refused = ann.post(f"/api/batches/{running['batch_id']}/retry")
            assert refused.status_code == 422 and "still running" in refused.json()["detail"]
            assert ann.post(f"/api/batches/{running['batch_id']}/cancel").status_code == 200
            stopped = wait_done(ann, running["batch_id"])
            assert all(i["status"] == "failed" for i in stopped["images"])
            for server, model in zip(servers(app), slow):
                server.time_model = model
    finally:
        app.close()

    app = start_app(data, auth=(ANN, BOB))  # the prompts as sent are in the store: a restart keeps them
    try:
        with httpx.Client(base_url=app.local_url.rstrip("/"), auth=ANN, timeout=30) as ann:
            again = ann.post(f"/api/batches/{running['batch_id']}/retry")
            assert again.status_code == 200, again.text
            made_again(stopped, wait_done(ann, again.json()["batch_id"]))
            links = app.backend.store.read_sql(
                "SELECT retry_of FROM job_images JOIN images USING (image_id) WHERE batch_id = ?",
                [again.json()["batch_id"]])
            assert set(links["retry_of"]) == {i["image_id"] for i in stopped["images"]}
    finally:
        app.close()


def _image(index: int, sampler: str = "euler", parent: str | None = None) -> ImageRecord:
    return ImageRecord(image_id=f"old{index}", batch_id="b", user_id="u", checkpoint="a.safetensors",
                       loras=(("style.safetensors", 0.7),), seed=42, batch_index=index, width=512, height=512,
                       steps=12, cfg=7.0, sampler_name=sampler, scheduler="normal", status="failed",
                       parent_image_id=parent)


def _job(first_index: int = 0, size: int = 4) -> JobRecord:
    return JobRecord(job_id="j", batch_id="b", positive="a fox, trigger", negative="blurry",
                     loras=(("style.safetensors", 0.7), ("lcm.safetensors", 1.0)), batch_size=size,
                     first_index=first_index, images=tuple((f"old{i}", None) for i in range(size)))


def test_a_retry_sends_one_piece_per_run_of_failed_indexes_when_the_sampler_allows() -> None:
    assert consecutive_runs([3, 0, 1]) == [[0, 1], [3]]
    failed = [(_image(i), _job()) for i in (0, 1, 3)]
    ids = iter(range(100))
    plan = plan_retry(failed, "sd15", lambda _: b"", make_id=lambda: f"n{next(ids)}")
    assert [(j.spec.first_index, j.spec.batch_size) for j in plan.jobs] == [(0, 2), (3, 1)]
    spec = plan.jobs[0].spec
    assert (spec.positive, spec.negative, spec.seed) == ("a fox, trigger", "blurry", 42)
    assert spec.loras == (LoraSpec("style.safetensors", 0.7), LoraSpec("lcm.safetensors", 1.0))  # accelerator too
    assert [(p.batch_index, p.retry_of, p.seed) for p in plan.images] == [(0, "old0", 42), (1, "old1", 42),
                                                                         (3, "old3", 42)]
    assert plan.images[0].loras == (LoraSpec("style.safetensors", 0.7),)  # the record keeps no accelerator
    assert plan.images[0].settings == RenderSettings(512, 512, 12, 7.0, "euler", "normal")


def test_a_job_that_cannot_be_cut_is_sent_whole_keeping_only_its_failed_images() -> None:
    failed = [(_image(2, sampler="lcm"), _job())]
    plan = plan_retry(failed, "sd15", lambda _: b"")
    assert [(j.spec.first_index, j.spec.batch_size) for j in plan.jobs] == [(0, 4)]
    assert [(p.batch_index, p.retry_of) for p in plan.images] == [(2, "old2")]

    refine = [(_image(1, parent="p0"), _job(size=2))]  # img2img: the source image is read again
    plan = plan_retry(refine, "sd15", lambda image_id: f"png of {image_id}".encode())
    [job] = plan.jobs
    assert job.spec.refine_from is not None and job.spec.refine_from.png == b"png of p0"
    assert (job.spec.first_index, job.spec.batch_size) == (0, 2)
    assert [p.parent_image_id for p in plan.images] == ["p0"]
