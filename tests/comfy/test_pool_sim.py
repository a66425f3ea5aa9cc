"""ServerPool on simulated GPUs: streaming, failover, affinity, cancel, rejoin."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import replace

import pytest

from comfy.models import GenerationSpec, ImageResult, JobFailed, JobProgress, PoolEvent, PoolJob, RefineSource
from comfy.errors import ComfyConnectionError, ComfyProtocolError
from comfy.pool import ServerPool

from .conftest import CHECKPOINT_METADATA, LORA, LORA_METADATA, SD15, start_sims, stop_sims

ALPHA, BETA, GAMMA = SD15


def make_job(job_id: str, checkpoint: str, images: int, seed: int = 1) -> PoolJob:
    """A whole job: its sampler draws noise per step, so the scheduler never splits it."""
    spec = GenerationSpec(checkpoint=checkpoint, positive="a lighthouse", negative="blurry", seed=seed,
                          width=512, height=512, steps=20, cfg=7.0, batch_size=images, sampler_name="euler_ancestral")
    return PoolJob(job_id, spec)


def batch_20() -> list[PoolJob]:
    """20 images, 3 checkpoints (7/7/6), jobs of at most 4."""
    sizes = {ALPHA: (4, 3), BETA: (4, 3), GAMMA: (4, 2)}
    return [make_job(f"{ck[:1]}{i}", ck, n, seed=10 * i) for ck, ns in sizes.items() for i, n in enumerate(ns)]


async def collect(stream: AsyncGenerator[PoolEvent, None]) -> list[PoolEvent]:
    """Every event of a `pool.run` stream, closed with `aclosing` as every consumer must."""
    async with contextlib.aclosing(stream) as events:
        return [event async for event in events]


@pytest.fixture
async def two_sims() -> AsyncIterator[list]:
    sims = await start_sims([SD15, SD15])
    yield sims
    await stop_sims(sims)


@pytest.fixture
async def pool(two_sims: list) -> AsyncIterator[ServerPool]:
    async with ServerPool([s.url for s in two_sims], names=[s.name for s in two_sims], health_interval=60,
                          timeout=5) as pool:
        yield pool


def images_of(events: list[PoolEvent]) -> list[ImageResult]:
    return [e for e in events if isinstance(e, ImageResult)]


async def test_batch_streams_each_image_as_its_job_finishes(pool: ServerPool, two_sims: list) -> None:
    jobs = batch_20()
    plan = pool.plan(jobs)
    assert sum(plan.values()) == 20 and set(plan) == {"sim-gpu-0", "sim-gpu-1"}
    done_at_each_image: list[int] = []
    events: list[PoolEvent] = []
    async with contextlib.aclosing(pool.run(jobs, "b1")) as stream:
        async for event in stream:
            events.append(event)
            if isinstance(event, ImageResult):
                done_at_each_image.append(sum(s.images_done for s in two_sims))
    images = images_of(events)
    assert len(images) == 20
    assert len({(i.job_id, i.batch_index) for i in images}) == 20
    assert all(i.png.startswith(b"\x89PNG") for i in images)
    # Incremental: the first image reached us while the servers had produced only part of the batch.
    assert done_at_each_image[0] < 20
    assert any(isinstance(e, JobProgress) for e in events)
    assert Counter(i.server for i in images) and len({i.server for i in images}) == 2
    # Checkpoint affinity: each job's images come from one server, in one prompt.
    by_job = {(i.job_id, i.prompt_id, i.server) for i in images}
    assert len(by_job) == len(jobs)
    statuses = {s.name: s for s in pool.statuses()}
    assert sum(s.images_done for s in statuses.values()) == 20
    assert all(s.seconds_per_image and s.loaded_checkpoint in SD15 for s in statuses.values())


async def test_killing_a_server_mid_batch_still_yields_all_images(pool: ServerPool, two_sims: list) -> None:
    two_sims[0].faults.die_after_images = 3
    events = await collect(pool.run(batch_20(), "b2"))
    images = images_of(events)
    assert not [e for e in events if isinstance(e, JobFailed)]
    assert len(images) == 20 and len({(i.job_id, i.batch_index) for i in images}) == 20
    status = {s.name: s for s in pool.statuses()}
    assert not status["sim-gpu-0"].online and status["sim-gpu-0"].last_error
    assert status["sim-gpu-1"].online


async def test_a_checkpoint_present_on_one_server_only_runs_there() -> None:
    sims = await start_sims([(ALPHA, BETA), SD15])
    try:
        async with ServerPool([s.url for s in sims], names=[s.name for s in sims], health_interval=60) as pool:
            events = await collect(pool.run(batch_20(), "b3"))
    finally:
        await stop_sims(sims)
    images = images_of(events)
    assert len(images) == 20
    assert {i.server for i in images if i.job_id.startswith("g")} == {"sim-gpu-1"}


async def test_all_servers_dead_fails_each_remaining_job_readably(pool: ServerPool, two_sims: list) -> None:
    for sim in two_sims:
        sim.faults.die_after_images = 4
    jobs = batch_20()
    events = await collect(pool.run(jobs, "b4"))
    failed = [e for e in events if isinstance(e, JobFailed)]
    images = images_of(events)
    assert failed, "both servers died, so some jobs cannot finish"
    finished_jobs = {i.job_id for i in images}
    assert {f.job_id for f in failed} == {j.job_id for j in jobs} - finished_jobs
    assert all("no live server can take it" in f.reason or "no ComfyUI server is online" in f.reason for f in failed)
    assert not any(s.online for s in pool.statuses())


async def test_cancel_reaches_every_server(pool: ServerPool, two_sims: list) -> None:
    for sim in two_sims:
        sim.time_model = sim.time_model.scaled(20)  # slow enough to cancel mid-job
    interrupted: list[str] = []
    for member in pool._members.values():
        original = member.client.interrupt

        async def spy(prompt_id: str | None = None, _orig=original, _name=member.name) -> None:
            interrupted.append(_name)
            await _orig(prompt_id)
        member.client.interrupt = spy  # type: ignore[method-assign]
    busy: set[str] = set()
    events: list[PoolEvent] = []
    async with contextlib.aclosing(pool.run(batch_20(), "b5")) as stream:
        async for event in stream:
            events.append(event)
            if isinstance(event, JobProgress):
                busy.add(event.server)
                if busy == {"sim-gpu-0", "sim-gpu-1"}:
                    await pool.cancel("b5")
    assert sorted(interrupted) == ["sim-gpu-0", "sim-gpu-1"]
    assert len(images_of(events)) < 20
    for sim in two_sims:
        sim.time_model = sim.time_model.scaled(1 / 20)
    after = await collect(pool.run([make_job("next", ALPHA, 1)], "b6"))
    assert len(images_of(after)) == 1  # servers are free again


async def test_recovered_server_rejoins_after_refresh(pool: ServerPool, two_sims: list) -> None:
    await two_sims[1].stop()
    await pool.refresh()
    assert [s.online for s in pool.statuses()] == [True, False]
    assert set(pool.plan(batch_20())) == {"sim-gpu-0"}
    await two_sims[1].restart()
    await pool.refresh()
    assert [s.online for s in pool.statuses()] == [True, True]
    events = await collect(pool.run(batch_20(), "b7"))
    assert {i.server for i in images_of(events)} == {"sim-gpu-0", "sim-gpu-1"}


async def test_stale_inventory_is_refreshed_and_the_job_retried_elsewhere(pool: ServerPool, two_sims: list) -> None:
    two_sims[0].remove_checkpoint(ALPHA)  # the pool still believes sim-gpu-0 has it
    jobs = [make_job(f"a{i}", ALPHA, 2, seed=i) for i in range(4)]
    events = await collect(pool.run(jobs, "b8"))
    assert len(images_of(events)) == 8
    assert {i.server for i in images_of(events)} == {"sim-gpu-1"}
    assert ALPHA not in pool.inventories()["sim-gpu-0"].checkpoints


async def test_execution_error_fails_the_job_without_retry_storm(pool: ServerPool, two_sims: list) -> None:
    for sim in two_sims:
        sim.faults.fail_checkpoints = {GAMMA}
    events = await collect(pool.run([make_job("g", GAMMA, 2), make_job("a", ALPHA, 2)], "b9"))
    [failed] = [e for e in events if isinstance(e, JobFailed)]
    assert failed.job_id == "g" and failed.server in {"sim-gpu-0", "sim-gpu-1"}
    assert "#1" in failed.reason  # names the failing node
    assert len(images_of(events)) == 2
    assert all(s.online for s in pool.statuses())


async def test_a_server_starts_its_next_prompt_while_the_last_images_download() -> None:
    """Once the batch has shown an image (the first comes home before anything else runs there:
    test_pool_split.py), a finished job's download overlaps the server's next prompt."""
    [sim] = await start_sims([SD15])
    try:
        async with ServerPool([sim.url], names=[sim.name], health_interval=60, timeout=5) as pool:
            [member] = pool._members.values()
            third_started = asyncio.Event()
            original = member.client.fetch_images
            downloads: list[int] = []

            async def held_until_the_next_prompt_runs(refs: list, _orig=original) -> list:
                downloads.append(len(refs))
                if len(downloads) > 1:
                    await third_started.wait()  # never set if the pool waited for this download
                return await _orig(refs)
            member.client.fetch_images = held_until_the_next_prompt_runs  # type: ignore[method-assign]
            events: list[PoolEvent] = []
            jobs = [make_job(name, ALPHA, 2, seed=seed) for seed, name in enumerate(("first", "second", "third"))]
            async with asyncio.timeout(10), contextlib.aclosing(pool.run(jobs, "pipe")) as stream:
                async for event in stream:
                    events.append(event)
                    if isinstance(event, JobProgress) and event.job_id == "third":
                        third_started.set()
    finally:
        await stop_sims([sim])
    assert len(images_of(events)) == 6


async def test_a_server_lost_while_downloading_reruns_the_job_elsewhere(pool: ServerPool, two_sims: list) -> None:
    lost: list[str] = []
    for member in pool._members.values():
        original = member.client.fetch_images

        async def dies_once(refs: list, _orig=original, _name=member.name) -> list:
            if not lost:
                lost.append(_name)
                raise ComfyConnectionError(f"{_name}: connection dropped")
            return await _orig(refs)
        member.client.fetch_images = dies_once  # type: ignore[method-assign]
    events = await collect(pool.run(batch_20(), "lost-download"))
    images = images_of(events)
    assert not [e for e in events if isinstance(e, JobFailed)]
    assert len(images) == 20 and len({(i.job_id, i.batch_index) for i in images}) == 20
    [gone] = lost
    assert [s.online for s in pool.statuses() if s.name == gone] == [False]


async def test_img2img_refine_with_batch_2_runs_as_one_job(pool: ServerPool, two_sims: list) -> None:
    [draft] = images_of(await collect(pool.run([make_job("draft", ALPHA, 1)], "b11")))
    refine = replace(make_job("refine", BETA, 2).spec, refine_from=RefineSource(draft.png, denoise=0.5))
    events = await collect(pool.run([PoolJob("refine", refine)], "b12"))
    assert not [e for e in events if isinstance(e, JobFailed)]
    images = images_of(events)
    assert [i.batch_index for i in images] == [0, 1] and len({i.prompt_id for i in images}) == 1
    assert images[0].png != images[1].png and all(i.png.startswith(b"\x89PNG") for i in images)
    assert sum(s.images_done for s in two_sims) == 3


async def test_unknown_checkpoint_fails_at_once(pool: ServerPool) -> None:
    events = await collect(pool.run([make_job("x", "nowhere.safetensors", 1)], "b10"))
    assert events == [JobFailed("x", "no online server has checkpoint nowhere.safetensors")]
    union = pool.inventory_union()
    assert union.checkpoints == tuple(sorted(SD15)) and LORA in union.loras


async def test_model_metadata_is_cached_per_folder_until_that_list_changes(pool: ServerPool, two_sims: list) -> None:
    fetched: list[tuple[str, str]] = []
    for member in pool._members.values():
        original = member.client.view_metadata

        async def spy(filename: str, folder: str = "loras", _orig=original) -> dict[str, str] | None:
            fetched.append((folder, filename))
            return await _orig(filename, folder)
        member.client.view_metadata = spy  # type: ignore[method-assign]

    async def look_up() -> list[dict[str, str] | None]:
        return [await pool.model_metadata(ALPHA, "checkpoints"), await pool.model_metadata(LORA),
                await pool.model_metadata(BETA, "checkpoints"), await pool.model_metadata("plain.safetensors"),
                await pool.model_metadata("not-there.safetensors")]

    first = await look_up()
    assert first == [CHECKPOINT_METADATA, LORA_METADATA, None, None, None]
    assert len(fetched) == 4  # nothing asked for a file no server lists
    assert await look_up() == first and len(fetched) == 4  # all four answers (even "none") cached
    for sim in two_sims:
        sim.remove_checkpoint(GAMMA)  # the checkpoint list changes, the LoRA list does not
    await pool.refresh()
    fetched.clear()
    assert await look_up() == first
    assert sorted(fetched) == [("checkpoints", ALPHA), ("checkpoints", BETA)]
    for sim in two_sims:
        sim.inventory.loras.pop("plain.safetensors")
    await pool.refresh()
    fetched.clear()
    assert await look_up() == [CHECKPOINT_METADATA, LORA_METADATA, None, None, None]
    assert fetched == [("loras", LORA)]  # plain.safetensors is no longer listed anywhere
    with pytest.raises(ValueError, match="unknown model folder"):
        await pool.model_metadata("x.safetensors", "vae")


async def test_an_unexpected_bug_fails_the_job_instead_of_hanging_the_batch(
        pool: ServerPool, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> dict:
        raise RuntimeError("boom")

    monkeypatch.setattr("comfy.pool.build_piece_workflow", broken)
    events = await asyncio.wait_for(collect(pool.run([make_job("j1", ALPHA, 2)], batch_key="bug")), timeout=10)
    failed = [e for e in events if isinstance(e, JobFailed)]
    assert [f.job_id for f in failed] == ["j1"] and "internal error" in failed[0].reason


async def test_a_server_that_sent_malformed_data_sits_out_its_quarantine(pool: ServerPool, two_sims: list) -> None:
    member = pool._members[two_sims[0].name]
    pool._server_lost(member, ComfyProtocolError("sim-gpu-0: image x.png is not a PNG"))
    await pool.refresh()  # its health checks pass, but it stays out
    status = {s.name: s for s in pool.statuses()}[two_sims[0].name]
    assert not status.online and "not a PNG" in (status.last_error or "")
    member.quarantined_until = 0.0  # the quarantine is over
    await pool.refresh()
    assert {s.name: s for s in pool.statuses()}[two_sims[0].name].online


async def test_a_server_busy_with_another_batch_takes_no_job_it_cannot_start(pool: ServerPool) -> None:
    """A worker takes the server's lock before it takes a job: while another batch's prompt runs
    there, this batch's jobs stay queued, so the other server steals them (nothing waits unseen)."""
    jobs = [make_job(f"a{i}", ALPHA, 2, seed=i) for i in range(4)]
    assert all(pool.plan(jobs).values())  # both servers are planned a share
    async with pool._members["sim-gpu-0"].lock:  # another batch's prompt holds sim-gpu-0 throughout
        async with asyncio.timeout(10):
            events = await collect(pool.run(jobs, "busy"))
    images = images_of(events)
    assert not [e for e in events if isinstance(e, JobFailed)]
    assert sorted((i.job_id, i.batch_index) for i in images) == [(f"a{i}", b) for i in range(4) for b in (0, 1)]
    assert {i.server for i in images} == {"sim-gpu-1"}


async def test_a_consumer_that_raises_leaves_no_worker_batch_or_prompt(pool: ServerPool, two_sims: list) -> None:
    """`async with aclosing(pool.run(...))`: the pool's cleanup is over before the consumer's
    exception leaves the block, including on a server whose POST /prompt was still on its way
    (here held until the pool's interrupt of it has passed, so it would land after it)."""
    for sim in two_sims:
        sim.time_model = sim.time_model.scaled(20)  # no job finishes before the consumer gives up
    late = pool._members["sim-gpu-1"].client
    gate, submitted = asyncio.Event(), asyncio.Event()
    held: list[str] = []
    submit, interrupt = late.submit, late.interrupt

    async def slow_submit(workflow: dict, prompt_id: str | None = None) -> str:
        held.append(prompt_id or "")
        try:
            await gate.wait()
        finally:
            held.remove(prompt_id or "")
        answer = await submit(workflow, prompt_id)
        submitted.set()
        return answer

    async def interrupt_then_release(prompt_id: str | None = None) -> None:
        await interrupt(prompt_id)
        if held:  # its worker still runs: let the held prompt reach the server now
            gate.set()
            await submitted.wait()
    late.submit = slow_submit  # type: ignore[method-assign]
    late.interrupt = interrupt_then_release  # type: ignore[method-assign]

    with pytest.raises(RuntimeError, match="consumer gave up"):
        async with contextlib.aclosing(pool.run(batch_20(), "quit")) as events:
            async for event in events:
                batch = pool._batches["quit"]
                assert held, "sim-gpu-1 should be submitting its first prompt"
                raise RuntimeError(f"consumer gave up at {event!r:.40}")
    assert "quit" not in pool._batches
    assert batch.tasks and all(task.done() for task in batch.tasks)
    async with asyncio.timeout(10):  # the interrupted prompt on sim-gpu-0 winds down
        while any(sim.queue.remaining() for sim in two_sims):
            await asyncio.sleep(0.01)
    finished = {sim.name: [e["status"]["status_str"] for e in sim.history.entries.values()] for sim in two_sims}
    assert finished == {"sim-gpu-0": ["error"], "sim-gpu-1": []}, finished


async def _answered_check(pool: ServerPool, name: str) -> None:
    """Refresh until a check of `name` is answered in time (on a loaded machine a check can miss
    the short time-out, which would count as the first slow one of the test's own)."""
    member = pool._members[name]
    for _ in range(20):
        await pool.refresh()
        if member.status.online and member.slow_checks == 0:
            return
    raise AssertionError(f"{name} never answered a health check in time: {member.status}")


async def test_one_slow_health_check_is_busy_two_in_a_row_are_hung(two_sims: list) -> None:
    """A refused connection counts at once; a health check that times out only counts the second
    time in a row (a busy server, e.g. loading a checkpoint, answers late and is fine)."""
    async with ServerPool([s.url for s in two_sims], names=[s.name for s in two_sims], health_interval=60,
                          timeout=1.0) as pool:  # 1 s: a loaded machine still answers (or refuses) in time
        slow, dead = two_sims
        await _answered_check(pool, slow.name)
        slow.faults.hang = True
        await pool.refresh()
        state = {s.name: s for s in pool.statuses()}
        assert state[slow.name].online, "one slow health check must not take a server out"
        slow.faults.hang = False
        await _answered_check(pool, slow.name)  # answered again: the count starts over
        slow.faults.hang = True
        await pool.refresh()
        assert {s.name: s for s in pool.statuses()}[slow.name].online
        await pool.refresh()
        hung = {s.name: s for s in pool.statuses()}[slow.name]
        assert not hung.online and "timed out" in (hung.last_error or "")
        slow.faults.hang = False

        dead.faults.refuse_connections = True
        await pool.refresh()
        assert not {s.name: s for s in pool.statuses()}[dead.name].online  # refused: at once
        dead.faults.refuse_connections = False


async def test_a_health_check_that_began_before_a_loss_does_not_bring_the_server_back(
        pool: ServerPool, two_sims: list) -> None:
    """A server dies mid-prompt while a health check it had already answered is still being
    gathered: the loss is the newer fact. (Seen in test_all_servers_down_then_one_back under load:
    the stale check marked the dead server online, and the next batch was accepted, not refused.)"""
    member = pool._members["sim-gpu-1"]
    answered, release = asyncio.Event(), asyncio.Event()
    inventory = member.client.inventory

    async def inventory_then_wait():  # the answer is in; the check has not yet been applied
        result = await inventory()
        answered.set()
        await release.wait()
        return result

    member.client.inventory = inventory_then_wait  # type: ignore[method-assign]
    check = asyncio.create_task(pool.refresh())
    await answered.wait()
    pool._server_lost(member, ComfyConnectionError("sim-gpu-1: lost during prompt p1"))
    release.set()
    await check
    assert {s.name: s.online for s in pool.statuses()} == {"sim-gpu-0": True, "sim-gpu-1": False}

    member.client.inventory = inventory  # type: ignore[method-assign]
    await pool.refresh()  # a check that starts after the loss decides again
    assert {s.name: s.online for s in pool.statuses()} == {"sim-gpu-0": True, "sim-gpu-1": True}
