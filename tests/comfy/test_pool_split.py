"""Jobs split into pieces: the same images, a first image sooner, one ending per job."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections import Counter
from dataclasses import replace

from PIL import Image

from comfy.client import ComfyClient
from comfy.models import GenerationSpec, ImageResult, JobFailed, PoolJob, RefineSource
from comfy.pool import ServerPool
from comfy.scheduler import Scheduler, ServerSlot
from comfy.pieces import build_piece_workflow, splits_exactly

from .conftest import SD15, start_sims, stop_sims

ALPHA = SD15[0]


def spec(images: int, sampler: str = "euler", first_index: int = 0) -> GenerationSpec:
    return GenerationSpec(checkpoint=ALPHA, positive="a lighthouse", negative="blurry", seed=7, width=64, height=64,
                          steps=4, cfg=7.0, batch_size=images, sampler_name=sampler, first_index=first_index)


def pixels(png: bytes) -> bytes:
    return Image.open(io.BytesIO(png)).convert("RGB").tobytes()


def test_only_deterministic_txt2img_splits() -> None:
    assert splits_exactly(spec(4))
    assert not splits_exactly(spec(4, sampler="euler_ancestral"))  # fresh noise per step over the batch
    assert not splits_exactly(replace(spec(4), refine_from=RefineSource(b"png")))
    assert not splits_exactly(spec(4, first_index=61))  # LatentFromBatch's batch_index ends at 63


def test_a_piece_takes_its_indexes_from_the_whole_batch() -> None:
    graph = build_piece_workflow(spec(3, first_index=1))
    [empty] = [n for n in graph.values() if n["class_type"] == "EmptyLatentImage"]
    [piece] = [n for n in graph.values() if n["class_type"] == "LatentFromBatch"]
    assert empty["inputs"]["batch_size"] == 4
    assert (piece["inputs"]["batch_index"], piece["inputs"]["length"]) == (1, 3)
    assert not [n for n in build_piece_workflow(spec(4)).values() if n["class_type"] == "LatentFromBatch"]


async def test_pieces_make_the_very_same_images_as_the_whole_job() -> None:
    [sim] = await start_sims([SD15], scale=0.0)
    client = ComfyClient(sim.url)
    try:
        whole = [pixels(i.data) for i in await client.run(build_piece_workflow(spec(4)))]
        pieces = [pixels(i.data) for s in (spec(1), spec(3, first_index=1)) for i in await client.run(build_piece_workflow(s))]
    finally:
        await client.close()
        await stop_sims([sim])
    assert len(set(whole)) == 4  # four different pictures
    assert pieces == whole


def test_the_server_first_to_show_an_image_starts_on_one_and_the_rest_follows() -> None:
    """s1 holds the checkpoint, so its first image comes soonest: it starts on one image of its
    first job, then runs the other three as one prompt; s0 (a load away) starts on a whole job."""
    jobs = [PoolJob(f"a{i}", spec(4)) for i in range(4)]
    scheduler = Scheduler(jobs, [ServerSlot("s0", frozenset(SD15)),
                                 ServerSlot("s1", frozenset(SD15), loaded=(ALPHA, ()))])
    assert scheduler.first_image == {"s1"}
    first = scheduler.next_for("s1", now=0.0)
    assert first is not None and (first.spec.batch_size, first.spec.first_index) == (1, 0)
    other = scheduler.next_for("s0", now=0.0)
    assert other is not None and other.spec.batch_size == 4
    scheduler.job_done("s1")
    rest = scheduler.next_for("s1", now=1.0)
    assert rest is not None and (rest.job_id, rest.spec.first_index, rest.spec.batch_size) == (first.job_id, 1, 3)
    assert scheduler.piece_ended(first) is False  # one of two pieces
    assert scheduler.piece_ended(rest) is True


def test_equal_fresh_servers_all_start_on_one_image() -> None:
    """Nothing tells two fresh servers apart, so either may show the first image: both start on
    one image, as round-robin's single-image prompts do, and grow to the rest of the job after."""
    jobs = [PoolJob(f"a{i}", spec(4)) for i in range(4)]
    scheduler = Scheduler(jobs, [ServerSlot("s0", frozenset(SD15)), ServerSlot("s1", frozenset(SD15))])
    assert scheduler.first_image == {"s0", "s1"}
    firsts = [scheduler.next_for(name, now=0.0) for name in ("s0", "s1")]
    assert [(j.spec.batch_size, j.spec.first_index) for j in firsts if j is not None] == [(1, 0), (1, 0)]
    scheduler.job_done("s0")
    rest = scheduler.next_for("s0", now=1.0)
    assert rest is not None and (rest.job_id, rest.spec.first_index, rest.spec.batch_size) == (firsts[0].job_id, 1, 3)


def test_jobs_whose_pieces_would_differ_are_never_split() -> None:
    jobs = [PoolJob("a", spec(4, sampler="euler_ancestral"))]
    scheduler = Scheduler(jobs, [ServerSlot("s0", frozenset(SD15))])
    first = scheduler.next_for("s0", now=0.0)
    assert first is not None and first.spec.batch_size == 4 and scheduler.pieces == {}


async def test_a_split_job_streams_each_index_once_and_ends_once() -> None:
    sims = await start_sims([SD15, SD15])
    try:
        async with ServerPool([s.url for s in sims], names=[s.name for s in sims], health_interval=60) as pool:
            jobs = [PoolJob(f"a{i}", spec(4)) for i in range(3)]
            async with contextlib.aclosing(pool.run(jobs, "split")) as events:
                got = [event async for event in events]
    finally:
        await stop_sims(sims)
    images = [e for e in got if isinstance(e, ImageResult)]
    assert not [e for e in got if isinstance(e, JobFailed)]
    assert Counter((i.job_id, i.batch_index) for i in images) == Counter({(f"a{j}", k): 1 for j in range(3) for k in range(4)})
    assert len({i.prompt_id for i in images}) > len(jobs)  # some job ran as more than one prompt


async def test_a_failed_piece_ends_its_job_in_one_failure_after_every_image() -> None:
    sims = await start_sims([SD15])
    try:
        async with ServerPool([s.url for s in sims], names=[s.name for s in sims], health_interval=60) as pool:
            [member] = pool._members.values()
            original = member.client.fetch_images
            calls = 0

            async def first_fetch_fails(refs: list, _orig=original) -> list:
                nonlocal calls
                calls += 1
                return [] if calls == 1 else await _orig(refs)  # the first piece "returns no images"
            member.client.fetch_images = first_fetch_fails  # type: ignore[method-assign]
            async with contextlib.aclosing(pool.run([PoolJob("a", spec(4))], "fail")) as events:
                got = [event async for event in events]
    finally:
        await stop_sims(sims)
    # the first piece failed before the second ran: its failure waits for the job's last piece
    assert [type(e).__name__ for e in got if isinstance(e, (ImageResult, JobFailed))] == ["ImageResult"] * 3 + ["JobFailed"]
    assert [e.batch_index for e in got if isinstance(e, ImageResult)] == [1, 2, 3]
    [failed] = [e for e in got if isinstance(e, JobFailed)]
    assert "returned 0 of 1 images" in failed.reason


async def test_the_simulator_checks_latent_from_batch_as_comfyui_does() -> None:
    [sim] = await start_sims([SD15], scale=0.0)
    try:
        graph = build_piece_workflow(spec(3, first_index=1))
        assert sim.validate(graph).ok
        [node] = [n for n in graph.values() if n["class_type"] == "LatentFromBatch"]
        node["inputs"]["batch_index"] = 64  # its maximum is 63
        result = sim.validate(graph)
        assert not result.ok and "value_bigger_than_max" in str(result)
    finally:
        await stop_sims([sim])


async def test_the_first_image_comes_home_before_its_server_gets_the_next_prompt(monkeypatch) -> None:  # noqa: ANN001
    """Until the batch has shown an image, a finished job's images are downloaded before its
    server starts on the next prompt (whose start would compete with the download on the server);
    after that, downloads overlap the next prompt as before."""
    events: list[str] = []
    real_fetch, real_submit = ComfyClient.fetch_images, ComfyClient.submit

    async def fetch(self: ComfyClient, refs: list) -> list:  # noqa: ANN001
        events.append("fetch")
        await asyncio.sleep(0.2)  # a slow download, so an overlap would show
        images = await real_fetch(self, refs)
        events.append("fetched")
        return images

    async def submit(self: ComfyClient, workflow: dict, prompt_id: str | None = None) -> str:
        events.append("submit")
        return await real_submit(self, workflow, prompt_id)

    monkeypatch.setattr(ComfyClient, "fetch_images", fetch)
    monkeypatch.setattr(ComfyClient, "submit", submit)
    [sim] = await start_sims([SD15], scale=0.0)
    try:
        async with ServerPool([sim.url], names=[sim.name], health_interval=60) as pool:
            jobs = [PoolJob(f"a{i}", replace(spec(2), seed=7 + i)) for i in range(3)]
            async with contextlib.aclosing(pool.run(jobs, "b")) as stream:
                images = [e async for e in stream if isinstance(e, ImageResult)]
    finally:
        await stop_sims([sim])
    assert len(images) == 6
    first_home = events.index("fetched")
    assert events[:first_home + 2] == ["submit", "fetch", "fetched", "submit"]  # nothing ran during the first
    later = events[first_home + 1:]
    assert later.index("submit", 1) < later.index("fetched")  # then a download overlaps the next prompt
