"""The pure scheduling rules: affinity, checkpoint availability, balance, stealing, failover."""

from __future__ import annotations

import pytest

from comfy.models import GenerationSpec, LoraSpec, PoolJob
from comfy.scheduler import CostLearner, CostModel, Scheduler, ServerSlot, ewma, group_key, simulate

COST = CostModel()


def job(job_id: str, checkpoint: str, images: int, *, loras: tuple[LoraSpec, ...] = (), family: str = "sd15",
        sampler: str = "euler_ancestral") -> PoolJob:
    """A pool job; its default sampler draws noise per step, so the scheduler never splits it
    (`splits_exactly`): these tests are about whole jobs, test_pool_split.py about pieces."""
    spec = GenerationSpec(checkpoint=checkpoint, positive="p", negative="n", seed=1, width=512, height=512,
                          steps=20, cfg=7.0, batch_size=images, loras=loras, sampler_name=sampler, family=family)
    return PoolJob(job_id, spec)


def batch_20_3() -> list[PoolJob]:
    """20 images over 3 checkpoints (7/7/6) in jobs of at most 4."""
    return [job("a1", "A", 4), job("a2", "A", 3), job("b1", "B", 4), job("b2", "B", 3), job("c1", "C", 4), job("c2", "C", 2)]


def scaled(factor: float) -> CostLearner:
    """A server uniformly `factor` times slower than nominal (faster below 1)."""
    return CostLearner(prior=COST.scaled(factor))


def slots(*specs: tuple[str, str]) -> list[ServerSlot]:
    return [ServerSlot(name, frozenset(ckpts)) for name, ckpts in specs]


def drain(scheduler: Scheduler, name: str) -> list[str]:
    out = []
    while (j := scheduler.next_for(name, now=0.0)) is not None:
        out.append(j.job_id)
        scheduler.job_done(name)
    return out


def test_a_checkpoint_only_goes_to_servers_that_have_it() -> None:
    result = simulate(batch_20_3(), slots(("s0", "ABC"), ("s1", "AB")))
    assert sum(result.images.values()) == 20
    scheduler = Scheduler(batch_20_3(), slots(("s0", "ABC"), ("s1", "AB")))
    s1 = [j for j in drain(scheduler, "s1")]
    assert not any(j.startswith("c") for j in s1)


def test_jobs_of_a_missing_checkpoint_are_unplaceable() -> None:
    scheduler = Scheduler(batch_20_3(), slots(("s0", "AB"), ("s1", "AB")))
    assert sorted(j.job_id for j in scheduler.unplaceable) == ["c1", "c2"]
    assert sum(len(s.queue) for s in scheduler.slots.values()) == 4


def test_groups_stay_together_and_prefer_the_loaded_server() -> None:
    servers = [ServerSlot("s0", frozenset("ABC")), ServerSlot("s1", frozenset("ABC"), loaded=("B", ()))]
    scheduler = Scheduler([job("a1", "A", 4), job("b1", "B", 4)], servers)
    assert [j.job_id for j in scheduler.slots["s1"].queue] == ["b1"]
    assert [j.job_id for j in scheduler.slots["s0"].queue] == ["a1"]


def test_balanced_makespan_close_to_the_lower_bound() -> None:
    jobs = batch_20_3()
    result = simulate(jobs, slots(("s0", "ABC"), ("s1", "ABC")))
    work = sum(COST.job_seconds(j, group_key(j)) for j in jobs) + 3 * COST.checkpoint_load["sd15"]
    assert result.images["s0"] + result.images["s1"] == 20
    assert abs(result.images["s0"] - result.images["s1"]) <= 4
    assert result.makespan <= 1.2 * work / 2


def test_three_groups_on_two_servers_split_one_group_for_balance() -> None:
    """Whole groups give 16.2 s vs 8.4 s; moving one job (one extra load) balances them."""
    jobs = batch_20_3()
    scheduler = Scheduler(jobs, slots(("s0", "ABC"), ("s1", "ABC")))
    queues = {name: [j.job_id for j in slot.queue] for name, slot in scheduler.slots.items()}
    split = [g for g in "abc" if all(any(j.startswith(g) for j in q) for q in queues.values())]
    assert len(split) == 1  # exactly one checkpoint is loaded on both servers
    for queue in queues.values():  # and each server still runs a checkpoint's jobs back to back
        letters = [j[0] for j in queue]
        assert letters == sorted(letters, key=letters.index)
    work_with_one_extra_load = sum(COST.job_seconds(j, group_key(j)) for j in jobs) + 4 * COST.checkpoint_load["sd15"]
    assert simulate(jobs, slots(("s0", "ABC"), ("s1", "ABC"))).makespan <= 1.01 * work_with_one_extra_load / 2


def test_a_joining_server_steals_the_tail_of_the_busiest_queue() -> None:
    scheduler = Scheduler([job("a1", "A", 4), job("a2", "A", 4), job("a3", "A", 4)],
                          [ServerSlot("s0", frozenset("A"), loaded=("A", ()))])
    first = scheduler.next_for("s0", now=0.0)
    scheduler.add_server(ServerSlot("s1", frozenset("A")))
    stolen = scheduler.next_for("s1", now=0.0)
    assert first is not None and stolen is not None
    assert (first.job_id, stolen.job_id) == ("a1", "a3")  # from the tail, so s0 keeps its order
    assert [j.job_id for j in scheduler.slots["s0"].queue] == ["a2"]  # stealing a2 too would finish later


def test_no_steal_when_the_thief_would_finish_later() -> None:
    scheduler = Scheduler([job("a1", "A", 2)], [ServerSlot("s0", frozenset("A"), loaded=("A", ())),
                                                ServerSlot("s1", frozenset("A"), learner=scaled(10.0))])
    assert scheduler.next_for("s1", now=0.0) is None
    assert scheduler.next_for("s0", now=0.0) is not None


def test_faster_servers_get_more_work() -> None:
    jobs = [job(f"j{i}", "A", 2) for i in range(10)]
    result = simulate(jobs, [ServerSlot("fast", frozenset("A"), learner=scaled(0.5)),
                               ServerSlot("slow", frozenset("A"), learner=scaled(2.0))])
    assert result.images["fast"] > result.images["slow"]


def test_dropped_server_jobs_move_to_a_capable_live_server() -> None:
    scheduler = Scheduler(batch_20_3(), slots(("s0", "ABC"), ("s1", "AB")))
    running = scheduler.next_for("s0", now=0.0)
    assert running is not None
    orphans = scheduler.drop_server("s0", now=1.0, unfinished=[running])
    remaining = drain(scheduler, "s1")
    assert sorted(j.job_id for j in orphans) == ["c1", "c2"]  # only s0 had C
    assert sorted(remaining) == ["a1", "a2", "b1", "b2"]


def test_forgotten_models_move_jobs_elsewhere() -> None:
    scheduler = Scheduler([job("a1", "A", 2), job("a2", "A", 2)], slots(("s0", "A"), ("s1", "A")))
    owner = next(name for name, s in scheduler.slots.items() if s.queue)
    other = "s1" if owner == "s0" else "s0"
    running = scheduler.next_for(owner, now=0.0)
    assert scheduler.forget_models(owner, {"A"}, now=0.0, unfinished=[running]) == []
    assert scheduler.slots[owner].queue == []
    assert len(scheduler.slots[other].queue) == 2


def test_forgotten_models_take_unfinished_jobs_given_as_a_generator() -> None:
    """`unfinished` is read once: a generator is not spent by a log line before the jobs move."""
    scheduler = Scheduler([job("a1", "A", 2), job("a2", "A", 2)], slots(("s0", "A"), ("s1", "A")))
    owner = next(name for name, s in scheduler.slots.items() if s.queue)
    other = "s1" if owner == "s0" else "s0"
    running = scheduler.next_for(owner, now=0.0)
    assert running is not None
    assert scheduler.forget_models(owner, {"A"}, now=0.0, unfinished=(j for j in [running])) == []
    assert sorted(j.job_id for j in scheduler.slots[other].queue) == ["a1", "a2"]


def test_loras_must_be_present_and_split_groups() -> None:
    style = (LoraSpec("style.safetensors", 0.7),)
    jobs = [job("plain", "A", 2), job("styled", "A", 2, loras=style)]
    assert group_key(jobs[0]) != group_key(jobs[1])
    scheduler = Scheduler(jobs, [ServerSlot("s0", frozenset("A")), ServerSlot("s1", frozenset("A"), frozenset({"style.safetensors"}))])
    assert [j.job_id for j in scheduler.slots["s1"].queue] == ["styled"]


def test_cost_model_counts_loads_and_batches() -> None:
    one, four = job("x", "A", 1), job("y", "A", 4)
    assert COST.switch_seconds(one, ("A", ())) == 0
    assert COST.switch_seconds(one, None) == 3.0
    assert COST.switch_seconds(job("z", "X", 1, family="sdxl"), ("A", ())) == 6.0
    assert COST.sample_seconds(one) == 20 * 0.05
    assert COST.sample_seconds(one) < COST.sample_seconds(four) < 4 * COST.sample_seconds(one)


def test_ewma_moves_towards_new_samples() -> None:
    assert ewma(None, 3.0) == 3.0
    assert 1.0 < ewma(1.0, 2.0) < 2.0


def test_a_batch_replans_only_when_a_learnt_estimate_moves_its_queued_work() -> None:
    """`adopt`: a server a few per cent slower than planned moves nothing (re-planning every batch
    on every finished job cost a quarter of the app's CPU); three times slower moves its jobs."""
    jobs = [job(f"a{i}", "A", 4) for i in range(4)] + [job(f"b{i}", "B", 4) for i in range(4)]
    scheduler = Scheduler(jobs, slots(("s0", "AB"), ("s1", "AB")))
    before = {name: [j.job_id for j in slot.queue] for name, slot in scheduler.slots.items()}
    assert all(before.values())
    assert not scheduler.adopt("s1", scaled(1.05), now=0.0)
    assert {name: [j.job_id for j in slot.queue] for name, slot in scheduler.slots.items()} == before
    assert scheduler.adopt("s1", scaled(3.0), now=0.0)
    after = {name: len(slot.queue) for name, slot in scheduler.slots.items()}
    assert after["s1"] < len(before["s1"]) and after["s0"] > len(before["s0"])
    assert not scheduler.adopt("unknown", scaled(3.0), now=0.0)


def test_a_jobs_pieces_are_made_once_and_cover_its_images() -> None:
    whole = job("j", "ckA", 4)
    head, rest = whole.split(1)
    assert whole.split(1) == (head, rest) and whole.split(1)[0] is head  # the same objects again
    assert (head.spec.batch_size, rest.spec.batch_size, rest.spec.first_index) == (1, 3, whole.spec.first_index + 1)
    assert head.job_id == rest.job_id == "j"
    for keep in (0, 4):
        with pytest.raises(ValueError):
            whole.split(keep)


def test_an_estimate_is_never_answered_from_an_older_cost_model() -> None:
    """Estimates are remembered per (cost model, job, loaded); what a server learnt replaces them."""
    slot = ServerSlot("gpu-0", frozenset({"ckA"}))
    scheduler = Scheduler([job("j", "ckA", 4)], [slot])
    probe = job("probe", "ckA", 2)
    before = scheduler.estimate(slot, probe, None)
    assert before == CostModel().job_seconds(probe, None)
    slot.learner = scaled(3.0)  # as if the server had measured itself three times slower
    assert scheduler.estimate(slot, probe, None) == pytest.approx(slot.cost.job_seconds(probe, None))
    assert scheduler.estimate(slot, probe, None) > 2 * before
