"""LoRA-combination and CFG arms: names, candidates, learning from evidence, negative suggestions, rules."""

from __future__ import annotations

import duckdb
import numpy as np

from learning.arms import ARM_KINDS, cfg_arm, combination_arm, combination_loras, image_arms, negative_terms
from learning.models import ArmStat
from learning.recommend import combinations as combos
from learning.recommend.negatives import suggest_negatives
from learning.store.preference_store import PreferenceStore
from tests.learning.store_builders import make_batch, make_image
from learning.store.schema import _NEW_ARM_KINDS_CHECK, ARMS_BEYOND_CHECKPOINTS, MIGRATIONS, migrate


def test_arm_names_are_order_free_and_read_back() -> None:
    arm = combination_arm("sdxl", [("b", 0.8), ("a", 0.6), ("a", 0.6)])
    assert arm == "sdxl|a@0.60+b@0.80" == combination_arm("sdxl", [("a", 0.6), ("b", 0.8)])
    assert combination_loras(arm) == ("sdxl", (("a", 0.6), ("b", 0.8)))
    assert combination_arm("sd15", []) == "sd15|none" and combination_loras("sd15|none") == ("sd15", ())
    assert cfg_arm("ckA", 7) == "ckA@7.0"
    assert negative_terms(" Blurry, lowres,,BLURRY ,\tgrain") == ("blurry", "lowres", "\tgrain")


def test_an_explicit_cfg_feeds_no_cfg_arm() -> None:
    learnt = image_arms("ckA", (), "sd15", 7.0, "")
    explicit = image_arms("ckA", (), "sd15", None, "")
    assert ("cfg", "ckA@7.0") in learnt and not [kind for kind, _ in explicit if kind == "cfg"]


def test_the_schema_accepts_exactly_the_arm_kinds() -> None:
    assert _NEW_ARM_KINDS_CHECK == "CHECK (arm_kind IN (" + ", ".join(f"'{k}'" for k in ARM_KINDS) + "))"


def test_candidate_sets_have_a_none_arm_strength_levels_and_no_vetoed_lora() -> None:
    sets = combos.candidate_sets([("a", 0.71), ("b", 0.66), ("c", 0.6)], vetoed=frozenset({"b"}))
    labels = [tuple(sorted(s)) for s in sets]
    assert labels[0] == (("a", 0.71), ("c", 0.6))  # today's Auto-LoRA set first
    assert () in labels  # none
    assert (("a", 0.6),) in labels and (("a", 0.8),) in labels  # strength levels
    assert all(name != "b" for s in sets for name, _ in s)
    assert all(len(s) <= combos.MAX_COMBINED_LORAS for s in sets[1:])
    assert combos.candidate_sets([]) == [()]


def test_evidence_makes_the_liked_set_best_and_thompson_draws_follow_it() -> None:
    arms = combos.combination_arms("sdxl", [(("a", 0.8), ("b", 0.6)), (("a", 0.8),), ()])
    evidence = {("anime", arms[0]): ArmStat(40, 4), ("anime", arms[1]): ArmStat(40, 28), ("anime", arms[2]): ArmStat(40, 12)}
    posterior = combos.posterior_for(["anime"], arms, evidence, ArmStat(120, 44))
    assert combos.best_arm(posterior, "LoRA set").best == arms[1]
    draws = combos.draw_arms(posterior, 200, np.random.default_rng(0))
    assert draws.count(1) > 150


def test_with_no_evidence_the_first_candidate_wins() -> None:
    arms = combos.combination_arms("sdxl", [(("a", 0.7),), ()])
    choice = combos.best_arm(combos.posterior_for(["anime"], arms, {}, ArmStat(0, 0)), "LoRA set")
    assert choice.best == arms[0] and choice.images == 0 and "no LoRA set evidence" in choice.reason


def test_a_weak_match_is_tested_but_not_in_the_default_set() -> None:
    sets = combos.candidate_sets([("a", 0.71), ("grain", 0.55)], weak=frozenset({"grain"}))
    assert sets[0] == (("a", 0.71),)  # what Quick mode applies without evidence: no weak match
    assert (("grain", 0.6),) in sets and (("grain", 0.8),) in sets  # tested in Explore
    only_weak = combos.candidate_sets([("grain", 0.55)], weak=frozenset({"grain"}))
    assert only_weak[0] == () and (("grain", 0.6),) in only_weak  # none first: nothing applied untested


def test_one_image_explores_one_setting_at_most() -> None:
    flat = combos.posterior_for(["x"], ["s0", "s1", "s2", "s3"], {}, ArmStat(0, 0))
    cfgs = combos.posterior_for(["x"], ["c0", "c1", "c2"], {}, ArmStat(0, 0))
    cells = combos.draw_cells(flat, cfgs, 400, np.random.default_rng(1))
    assert len(cells) == 400 and all(s == 0 or c == 0 for s, c in cells)  # argmax of ties: the first
    assert {s for s, _ in cells} == {0, 1, 2, 3} and {c for _, c in cells} == {0, 1, 2}  # both still explored
    assert all(c is None for _, c in combos.draw_cells(flat, None, 5, np.random.default_rng(1)))


def test_a_lora_disliked_in_every_set_pulls_down_its_untried_sets() -> None:
    sets = [(("w", 0.74),), (("w", 0.6),), (("w", 0.8),), ()]
    arms = combos.combination_arms("sdxl", sets)
    evidence = {("water", arms[0]): ArmStat(12, 1), ("water", arms[3]): ArmStat(4, 1)}
    lora = {("water", "w"): ArmStat(12, 1)}
    base = ArmStat(16, 2)
    alone = combos.posterior_for(["water"], arms, evidence, base)
    factored = combos.set_posterior(["water"], "sdxl", sets, evidence, lora, base)
    assert factored.mean[1] < alone.mean[1] and factored.mean[2] < alone.mean[2]  # untried strengths of w
    assert factored.mean[3] == alone.mean[3]  # none has no LoRA to borrow from
    assert combos.best_arm(factored, "LoRA set").best == arms[3]
    no_lora_evidence = combos.set_posterior(["water"], "sdxl", sets, evidence, {}, base)
    assert np.allclose(no_lora_evidence.mean, alone.mean)


def test_cfg_evidence_of_other_checkpoints_counts_at_half_weight() -> None:
    evidence = {("anime", "ckA@5.0"): ArmStat(10, 5), ("anime", "ckB@5.0"): ArmStat(10, 3)}
    found = combos.cfg_evidence("ckA", ["ckA", "ckB"], [5.0, 8.0], evidence)
    assert found == {("anime", "ckA@5.0"): ArmStat(15, 6.5, 0)}


def test_negative_suggestions_need_lift_and_skip_present_and_dismissed_terms() -> None:
    terms = {("portrait", "blurry"): ArmStat(20, 12), ("portrait", "lowres"): ArmStat(20, 6),
             ("portrait", "grain"): ArmStat(20, 12), ("portrait", "text"): ArmStat(3, 3)}
    totals = {"portrait": ArmStat(60, 20)}
    found = suggest_negatives(["portrait"], terms, totals, present={"grain"}, dismissed={("portrait", "x")})
    assert [s.term for s in found] == ["blurry"]  # lowres: no lift; grain: present; text: too few
    assert suggest_negatives(["portrait"], terms, totals, (), {("portrait", "blurry"), ("portrait", "grain")}) == []


def test_vetoes_and_dismissals_survive_a_restart(tmp_path) -> None:
    path = tmp_path / "p.duckdb"
    store = PreferenceStore.open(path)
    try:
        assert store.set_rule("alice", "lora-veto", "portrait", "film_grain_xl", True)
        assert not store.set_rule("alice", "lora-veto", "portrait", "film_grain_xl", True)  # idempotent
        store.set_rule("alice", "negative-dismissal", "portrait", "blurry", True)
        store.set_rule("alice", "lora-veto", "cat", "anime_style", True)
        store.set_rule("alice", "lora-veto", "cat", "anime_style", False)  # lifted
    finally:
        store.close()
    store = PreferenceStore.open(path)
    try:
        assert store.rules("alice", "lora-veto") == (("portrait", "film_grain_xl"),)
        assert store.rules("alice", "negative-dismissal") == (("portrait", "blurry"),)
        assert store.rules("bob", "lora-veto") == ()
    finally:
        store.close()


def test_replacing_rules_is_an_import_of_their_export() -> None:
    store = PreferenceStore.open(":memory:")
    try:
        store.set_rule("alice", "lora-veto", "portrait", "film_grain_xl", True)
        store.set_rule("bob", "lora-veto", "dog", "x", True)
        exported = store.rules("alice", "lora-veto")
        assert store.replace_rules("bob", "lora-veto", exported) == 2  # lifted one, set one
        assert store.rules("bob", "lora-veto") == exported
    finally:
        store.close()


def test_a_file_migrated_to_the_new_arm_kinds_counts_its_history_for_them(tmp_path) -> None:
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    migrate(con, [m for m in MIGRATIONS if m.version < ARMS_BEYOND_CHECKPOINTS])
    con.execute("""INSERT INTO batches VALUES ('b1', 'alice', 's1', 'a cat', 'blurry', ['cat'], 'draft', 'sd15',
                   true, true, 'explore', 'ckA', 0.2, 1, 'adaptive', NULL, now(), now())""")
    con.execute("""INSERT INTO images (image_id, batch_id, user_id, checkpoint, loras, seed, batch_index, width,
                   height, steps, cfg, sampler_name, scheduler, denoise, status, created_at, finished_seq)
                   VALUES ('i1', 'b1', 'alice', 'ckA', [{'name': 'detail', 'strength': 0.6}], 1, 0, 512, 512, 8,
                           7.0, 'euler', 'normal', 1.0, 'done', now(), nextval('fact_seq'))""")
    con.execute("INSERT INTO feedback (user_id, batch_id, image_id, action, created_at) "
                "VALUES ('alice', 'b1', 'i1', 'select', now())")
    con.close()
    store = PreferenceStore.open(path)
    try:
        found = store.arm_stats("alice", "lora-combination", ["cat"])
        assert found == {("cat", "sd15|detail@0.60"): ArmStat(1.0, 1.0, 0.0)}
        assert store.arm_stats("alice", "cfg", ["cat"]) == {("cat", "ckA@7.0"): ArmStat(1.0, 1.0, 0.0)}
        assert store.aggregates_equal_rebuild()
    finally:
        store.close()


def test_a_batch_whose_cfg_the_user_set_is_never_learnt_against() -> None:
    store = PreferenceStore.open(":memory:")
    try:
        for batch_id, explicit in (("mine", True), ("planned", False)):
            batch = make_batch(batch_id, keywords=("cat",), cfg_explicit=explicit)
            store.add_batch(batch, [make_image(batch, 0, cfg=11.0 if explicit else 7.0)])
            store.apply_feedback("alice", batch_id, "select", [f"{batch_id}-0"])
        assert store.get_batch("mine", "alice").cfg_explicit
        assert store.arm_stats("alice", "cfg", ["cat"]) == {("cat", "ckA@7.0"): ArmStat(1.0, 1.0, 0.0)}
        assert store.arm_totals("alice", "checkpoint")["ckA"]["total"] == 2  # the rest of it still counts
    finally:
        store.close()
