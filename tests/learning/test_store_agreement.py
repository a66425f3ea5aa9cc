"""Every form of the store's rules gives the same numbers.

Decay: `decay_factor()` (Python) and the `decayed` macro the schema installs (SQL), over a grid.

Counting, after random histories (several users, keywords, checkpoints and LoRAs; reviews of
several steps with select / unselect / reject / reject_all / viewed, undo, late images, moving on,
imports, compactions, refused reviews, resets of a keyword or of everything and their undos):
  (a) the in-memory aggregates (the store's evidence reads, `aggregates_memory`),
  (b) the SQL reference reader over the stored aggregates (`store.sql_aggregates()`, and the
      `preference_stats_now` table itself),
  (c) a full rebuild from the facts (`counting_rebuild_sql`; `aggregates_equal_rebuild()` compares
      it to the tables, then `rebuild_aggregates()` replaces them by it),
equal each other and an independent model of the rules written here (plain counts, and decayed
counts with `decay_factor`);
  (d) the in-memory evidence store (`evidence_memory`) gives the same numbers on the histories
      it models: each batch reviewed once, in one go.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from learning.models import ArmKind, ArmStat, BatchRecord, ImageRecord, ImageStatus
from learning.store.counting_write_path import FAVOURITE_WEIGHT
from learning.store.decay import decay_factor
from learning.store.evidence_memory import InMemoryEvidence, ReviewedImage
from learning.store.preference_store import (
    PreferenceStore, StoreError, UnknownBatchError, UnknownImageError, UnknownResetError,
)
from tests.learning.store_builders import (
    EvidenceReads,
    evidence_snapshot,
    make_batch,
    make_image,
    table_rows,
)

USERS = ("alice", "bob")
CHECKPOINTS = ("ckA", "ckB", "ckC")
LORA_SETS = ((), (("detail", 0.6),), (("detail", 0.5), ("film", 0.8)), (("film", 0.8), ("detail", 0.5)),
             (("detail", 0.65), ("detail", 0.65)))
FAMILIES = ("sd15", "sdxl")
NEGATIVE_PROMPTS = ("", "blurry", " Blurry, lowres ,", "lowres,, blurry, LOWRES")
CFGS = (5.0, 7.0, 8.25)
LORAS = ("detail", "film")
KEYWORDS = ("cat", "hat", "sea")
READERS = (*USERS, None)  # each user, and the global view
ALL_ROWS = (*KEYWORDS, "*")
ARMS = ("ckA", "ckC", "film", "sd15|none", "sdxl|detail@0.50+film@0.80", "ckA@5.0", "blurry")
HALF_LIVES = (1.0, 3.0, 30.0)
REVIEW_ACTIONS = ("select", "reject", "reject_all", "viewed", "favourite")
BATCH_ACTIONS = ("reject_all", "viewed")

Key = tuple[str, str, str, str]  # (user_id, keyword, arm_kind, arm)
Counts = tuple[int, int, int]
Step = tuple[str, list[str]]


def test_decay_factor_and_the_sql_macro_agree() -> None:
    """The two definitions of the decay rule, as the store calls them: elapsed reviews as
    BIGINT, the half-life as a bound DOUBLE (reads, rebuild) or an inlined literal (compaction)."""
    grid = [(elapsed, half_life, w)
            for elapsed in (0, 1, 2, 3, 7, 10, 29, 30, 31, 99, 100, 1000)
            for half_life in (0.5, 1.0, 2.0, 3.0, 7.5, 30.0, 100.0)
            for w in (1.0, 7.0, -1.0)]
    store = PreferenceStore.open(":memory:")
    try:
        bound = store.read_sql(
            "SELECT decayed(w, e, h) AS d FROM (SELECT unnest($e::BIGINT[]) AS e, "
            "unnest($h::DOUBLE[]) AS h, unnest($w::DOUBLE[]) AS w)",
            {"e": [g[0] for g in grid], "h": [g[1] for g in grid], "w": [g[2] for g in grid]},
        )["d"].tolist()
        inlined = [store.read_sql(f"SELECT decayed({w!r}, {e}::BIGINT, {h!r}) AS d")["d"].iloc[0]
                   for e, h, w in grid[::7]]
    finally:
        store.close()
    python = [w * decay_factor(e, h) for e, h, w in grid]
    assert bound == pytest.approx(python, rel=1e-15, abs=0)
    assert inlined == pytest.approx(python[::7], rel=1e-15, abs=0)
    assert decay_factor(0, 3.0) == 1.0 and decay_factor(3, 3.0) == 0.5


# --- an independent model of the counting rules ---------------------------------------------


@dataclass
class ModelImage:
    """What the test believes about one image, tracked click by click."""

    record: ImageRecord
    batch: BatchRecord
    keywords: tuple[str, ...]
    done: bool
    state: str = "none"
    favourite: bool = False
    counted: Counts = (0, 0, 0)  # its contribution to its rows so far
    counted_from: int = 0  # the model's clock when it started to count


@dataclass
class ModelReset:
    at: int  # the model's clock
    user: str
    keyword: str | None
    undone: bool = False


@dataclass
class Model:
    """The rules, restated: every change of an image's contribution is stamped with its user's
    review count at that moment and decays from there with `decay_factor`; a reset not undone
    hides from its keyword's rows (None: all rows) every image and import that counted before
    it. `clock` ticks once per store call, which orders counting against resets."""

    half_life: float
    images: dict[str, ModelImage] = field(default_factory=dict)
    batches: dict[str, list[str]] = field(default_factory=dict)  # in the order they were added
    owners: dict[str, str] = field(default_factory=dict)
    reviewed: set[str] = field(default_factory=set)
    seqs: dict[str, int] = field(default_factory=dict)
    changes: list[tuple[Key, int, Counts, tuple[float, float, float], int]] = field(
        default_factory=list)  # (row, seq, counts, decayed counts, counted from)
    feedback_rows: int = 0
    clock: int = 0
    resets: dict[int, ModelReset] = field(default_factory=dict)  # by the store's reset_id

    def tick(self) -> None:
        self.clock += 1

    def reset(self, user: str, keyword: str | None) -> bool:
        """Whether there was something to reset (else nothing is recorded)."""
        return any(k[0] == user and keyword in (None, k[1]) for k in self.rows())

    def hidden(self, key: Key, counted_from: int) -> bool:
        return any(r.user == key[0] and r.keyword in (None, key[1]) and r.at > counted_from
                   and not r.undone for r in self.resets.values())

    def add_batch(self, batch: BatchRecord, images: Sequence[ImageRecord]) -> None:
        self.batches[batch.batch_id] = [image.image_id for image in images]
        self.owners[batch.batch_id] = batch.user_id
        for image in images:
            self.images[image.image_id] = ModelImage(image, batch, batch.keywords, image.status == "done")

    def moved_on(self, new_batch_id: str) -> list[str]:
        """The batches a new batch reviews as viewed: its user's earlier unreviewed ones that
        finished generating with at least one done image, oldest first."""
        user = self.owners[new_batch_id]
        found = []
        for batch_id, ids in self.batches.items():
            images = [self.images[i] for i in ids]
            if (batch_id != new_batch_id and self.owners[batch_id] == user
                    and batch_id not in self.reviewed and any(i.done for i in images)
                    and not any(i.record.status in ("queued", "running") and not i.done
                                for i in images)):
                found.append(batch_id)
        return found

    def review(self, batch_id: str, steps: Sequence[Step]) -> None:
        """One review: the batch counts from its first reviewing step (one more review of its
        user), the steps change the states in order, then the contributions are recounted."""
        if batch_id not in self.reviewed and any(a in REVIEW_ACTIONS for a, _ in steps):
            self.reviewed.add(batch_id)
            user = self.owners[batch_id]
            self.seqs[user] = self.seqs.get(user, 0) + 1
        for action, ids in steps:
            self.feedback_rows += max(1, len(set(ids)))
            for image_id in ids:
                image = self.images[image_id]
                if action == "unfavourite":
                    image.favourite = False
                    continue
                image.favourite = action == "favourite" or (image.favourite and action == "select")
                image.state = {"select": "selected", "reject": "rejected", "unselect": "none",
                               "favourite": "selected"}[action]
            if action == "reject_all":
                for image_id in self.batches[batch_id]:
                    image = self.images[image_id]
                    if image.done and image.state != "selected":
                        image.state = "rejected"
        self.recount(batch_id)

    def finish(self, image_id: str) -> None:
        self.images[image_id].done = True
        self.recount(self.images[image_id].record.batch_id)

    def recount(self, batch_id: str) -> None:
        user = self.owners[batch_id]
        for image_id in self.batches[batch_id]:
            image = self.images[image_id]
            counts: Counts = (0, 0, 0)
            if image.done and batch_id in self.reviewed:
                counts = ((FAVOURITE_WEIGHT, FAVOURITE_WEIGHT, 0) if image.favourite else
                          (1, int(image.state == "selected"), int(image.state == "rejected")))
            if counts == image.counted:
                continue
            if image.counted == (0, 0, 0):
                image.counted_from = self.clock
            delta = (counts[0] - image.counted[0], counts[1] - image.counted[1],
                     counts[2] - image.counted[2])
            image.counted = counts
            for keyword in (*image.keywords, "*"):
                for kind, arm in model_arms(image):
                    self.changes.append(((user, keyword, kind, arm), self.seqs.get(user, 0),
                                         delta, (float(delta[0]), float(delta[1]),
                                                 float(delta[2])), image.counted_from))

    def transfer(self, source: str, target: str) -> None:
        """An export of `source` imported by `target`: its rows as of now, counting from now."""
        exported = [(key, row) for key, row in self.rows().items() if key[0] == source]
        for (_, keyword, kind, arm), row in exported:
            self.changes.append(((target, keyword, kind, arm), self.seqs.get(target, 0),
                                 (int(row[0]), int(row[1]), int(row[2])),
                                 (row[3], row[4], row[5]), self.clock))

    def rows(self) -> dict[Key, list[float]]:
        """Every aggregate row now: plain counts summed, decayed counts decayed to now."""
        rows: dict[Key, list[float]] = {}
        for key, seq, counts, weights, counted_from in self.changes:
            if self.hidden(key, counted_from):
                continue
            row = rows.setdefault(key, [0, 0, 0, 0.0, 0.0, 0.0])
            factor = decay_factor(self.seqs.get(key[0], 0) - seq, self.half_life)
            for n in range(3):
                row[n] += counts[n]
                row[3 + n] += weights[n] * factor
        return rows


def model_arms(image: ModelImage) -> list[tuple[str, str]]:
    """The arms an image feeds, restated: checkpoint, each distinct LoRA, the LoRA set with
    strengths under the family ('none' without), checkpoint@CFG unless the user set it, each
    distinct trimmed lower-cased negative term."""
    record, batch = image.record, image.batch
    arms = [("checkpoint", record.checkpoint)]
    arms += [("lora", name) for name in dict.fromkeys(n for n, _ in record.loras)]
    lora_set = sorted({f"{n}@{s:.2f}" for n, s in record.loras})
    arms.append(("lora-combination", f"{batch.family}|{'+'.join(lora_set) or 'none'}"))
    if not batch.cfg_explicit:
        arms.append(("cfg", f"{record.checkpoint}@{record.cfg:.1f}"))
    terms = {t.strip(" ").lower() for t in batch.negative_prompt.split(",")} - {""}
    arms += [("negative-term", term) for term in sorted(terms)]
    return arms


class ModelReads:
    """The store's evidence reads, answered from the model's rows."""

    def __init__(self, model: Model) -> None:
        self._rows = model.rows()
        self._seqs = dict(model.seqs)

    def arm_stats(self, user_id: str | None, kind: ArmKind, keywords: Sequence[str],
                  arms: Sequence[str] | None = None) -> dict[tuple[str, str], ArmStat]:
        if not keywords or (arms is not None and not arms):
            return {}
        sums: dict[tuple[str, str], list[float]] = {}
        for (user, keyword, row_kind, arm), row in self._rows.items():
            if (row_kind == kind and keyword in keywords and user_id in (None, user)
                    and (arms is None or arm in arms)):
                total = sums.setdefault((keyword, arm), [0.0, 0.0, 0.0])
                for n in range(3):
                    total[n] += row[3 + n]
        return {key: ArmStat(*total) for key, total in sums.items()}

    def base_rate(self, user_id: str | None, kind: ArmKind) -> ArmStat:
        stats = self.arm_stats(user_id, kind, ["*"]).values()
        return ArmStat(sum(s.shown for s in stats), sum(s.selected for s in stats),
                       sum(s.rejected for s in stats))

    def total_reviews(self, user_id: str | None) -> int:
        return sum(self._seqs.values()) if user_id is None else self._seqs.get(user_id, 0)

    def arm_totals(self, user_id: str | None, kind: ArmKind) -> dict[str, dict]:
        totals: dict[str, list[int]] = {}
        for (user, keyword, row_kind, arm), row in self._rows.items():
            if row_kind == kind and keyword == "*" and user_id in (None, user):
                total = totals.setdefault(arm, [0, 0])
                total[0] += int(row[1])
                total[1] += int(row[0])
        return {arm: {"selected": selected, "total": shown, "selection_rate": selected / shown}
                for arm, (selected, shown) in totals.items() if shown > 0}


def stored_rows(store: PreferenceStore) -> dict[Key, list[float]]:
    """The aggregate tables as the SQL reference sees them (`preference_stats_now`)."""
    table = store.read_sql(
        "SELECT user_id, keyword, arm_kind, arm, shown, selected, rejected, w_shown, w_selected, "
        "w_rejected FROM preference_stats_now($half_life)", {"half_life": store.half_life})
    return {tuple(row[:4]): list(row[4:]) for row in table.itertuples(index=False)}


def assert_rows_equal(found: dict[Key, list[float]], expected: dict[Key, list[float]]) -> None:
    assert found.keys() == expected.keys()
    for key, row in expected.items():
        assert found[key][:3] == row[:3], key  # plain counts exactly
        assert found[key][3:] == pytest.approx(row[3:], rel=1e-9, abs=1e-12), key


def snapshot(reads: EvidenceReads) -> dict[str, float]:
    return evidence_snapshot(reads, READERS, ALL_ROWS, ARMS)


# --- the random histories ----------------------------------------------------------------------


def review_steps(ids: Sequence[str], max_steps: int = 4,
                 done: Sequence[str] = ()) -> st.SearchStrategy[list[Step]]:
    """One review request: 1 to `max_steps` steps, clicks naming 1-3 of the batch's images
    (repeats and undo included), batch actions naming none."""
    click = st.tuples(st.sampled_from(["select", "unselect", "reject"]),
                      st.lists(st.sampled_from(ids), min_size=1, max_size=3))
    batch_action = st.tuples(st.sampled_from(BATCH_ACTIONS), st.just([]))
    marks = [click, batch_action]
    if done:  # favourites: only a done image can become one
        marks.append(st.tuples(st.sampled_from(["favourite", "unfavourite"]),
                               st.lists(st.sampled_from(list(done)), min_size=1, max_size=3)))
    return st.lists(st.one_of(*marks), min_size=1, max_size=max_steps)


def new_batch(store: PreferenceStore, model: Model, data: st.DataObject, n: int,
              statuses: Sequence[str] = ("done", "done", "queued", "failed")) -> str:
    user = data.draw(st.sampled_from(USERS))
    keywords = tuple(data.draw(st.lists(st.sampled_from(KEYWORDS), max_size=3, unique=True)))
    batch = make_batch(f"b{n:03d}", user_id=user, keywords=keywords,  # ids sort as they come
                       family=data.draw(st.sampled_from(FAMILIES)),
                       negative_prompt=data.draw(st.sampled_from(NEGATIVE_PROMPTS)),
                       cfg_explicit=data.draw(st.booleans()))
    images = [
        make_image(batch, i, checkpoint=data.draw(st.sampled_from(CHECKPOINTS)),
                   loras=data.draw(st.sampled_from(LORA_SETS)), cfg=data.draw(st.sampled_from(CFGS)),
                   status=data.draw(st.sampled_from(statuses)))
        for i in range(data.draw(st.integers(1, 4)))
    ]
    model.add_batch(batch, images)
    model.tick()
    # moved on: the user started it instead of reviewing the session's finished batches
    moved_on = data.draw(st.booleans())
    expected = model.moved_on(batch.batch_id) if moved_on else []
    assert store.add_batch(batch, images, moved_on=moved_on) == expected
    for batch_id in expected:
        model.review(batch_id, [("viewed", [])])
    return batch.batch_id


def reset_step(store: PreferenceStore, model: Model, data: st.DataObject) -> None:
    """A reset of a keyword or of everything, or an undo (repeated, or tried by another user)."""
    if model.resets and data.draw(st.booleans()):
        reset_id = data.draw(st.sampled_from(sorted(model.resets)))
        reset = model.resets[reset_id]
        intruder = next(u for u in USERS if u != reset.user)
        if data.draw(st.booleans()):
            with pytest.raises(UnknownResetError):
                store.undo_reset(intruder, reset_id)
        result = store.undo_reset(reset.user, reset_id)
        assert (result.reset_id, result.keyword, result.undone) == (reset_id, reset.keyword, True)
        assert result.changed is not reset.undone
        reset.undone = True
        return
    user = data.draw(st.sampled_from(USERS))
    keyword = data.draw(st.sampled_from((*KEYWORDS, None)))
    something = model.reset(user, keyword)
    result = store.reset_preferences(user, keyword)
    assert result.changed is something and (result.reset_id is not None) is something
    if result.reset_id is not None:
        model.resets[result.reset_id] = ModelReset(model.clock, user, keyword)


def run_step(store: PreferenceStore, model: Model, data: st.DataObject, n: int) -> None:
    kind = data.draw(st.sampled_from(["batch", "batch", "finish", "review", "review", "feedback",
                                      "refused", "compact", "transfer", "reset", "reset"]))
    model.tick()
    if kind == "reset":
        reset_step(store, model, data)
        return
    if kind == "compact":
        store.compact_aggregates()  # folding pending changes must not change any value
        return
    if kind == "transfer":
        source, target = data.draw(st.sampled_from(USERS)), data.draw(st.sampled_from(USERS))
        store.import_preferences(target, store.export_preferences(source, "csv"), "csv")
        model.transfer(source, target)
        return
    if kind == "batch" or not model.batches:
        new_batch(store, model, data, n)
        return
    batch_id = data.draw(st.sampled_from(sorted(model.batches)))
    ids = model.batches[batch_id]
    done = [i for i in ids if model.images[i].done]
    owner = model.owners[batch_id]
    if kind == "finish":
        image_id = data.draw(st.sampled_from(ids))
        if not model.images[image_id].done:
            store.update_images([ImageStatus(image_id, "done")])
            model.finish(image_id)
    elif kind == "feedback":  # one step through the one-step form
        [(action, targets)] = data.draw(review_steps(ids, max_steps=1, done=done))
        store.apply_feedback(owner, batch_id, action, targets)
        model.review(batch_id, [(action, targets)])
    elif kind == "review":
        steps = data.draw(review_steps(ids, done=done))
        store.apply_review(owner, batch_id, steps)
        model.review(batch_id, steps)
    else:  # valid steps, then one the store refuses: nothing of the review is written
        steps = data.draw(review_steps(ids, done=done))
        bad_step, error, user = data.draw(st.sampled_from([
            (("select", ["nope"]), UnknownImageError, owner),
            (("reject", []), ValueError, owner),
            (("viewed", ids[:1]), ValueError, owner),
            (("select", ids[:1]), UnknownBatchError, "mallory"),
        ]))
        with pytest.raises(error):
            store.apply_review(user, batch_id, [*steps, bad_step])


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_memory_sql_reference_rebuild_and_the_rules_agree(data: st.DataObject) -> None:
    half_life = data.draw(st.sampled_from(HALF_LIVES))
    store = PreferenceStore.open(":memory:", half_life=half_life)
    model = Model(half_life)
    try:
        for n in range(data.draw(st.integers(1, 25))):
            run_step(store, model, data, n)
        expected = snapshot(ModelReads(model))
        assert store.aggregates_equal_rebuild()  # (c) = the tables, and (a) = the tables
        assert_rows_equal(stored_rows(store), model.rows())  # (b), every row
        assert snapshot(store) == pytest.approx(expected, rel=1e-9, abs=1e-12)  # (a)
        # (a) the SQL reference reader: with the line above, the in-memory copy equals it read for read
        assert snapshot(store.sql_aggregates()) == pytest.approx(expected, rel=1e-9, abs=1e-12)
        for batch_id, ids in model.batches.items():
            assert store.batch_snapshot(batch_id).facts.states() == {
                i: model.images[i].state for i in ids}
        assert table_rows(store, "feedback") == model.feedback_rows
        store.rebuild_aggregates()  # (c) replaces the tables, and the copy is reloaded from it
        assert store.aggregates_equal_rebuild()
        assert_rows_equal(stored_rows(store), model.rows())
        assert snapshot(store) == pytest.approx(expected, rel=1e-9, abs=1e-12)
        assert store.total_reviews(None) == len(model.reviewed)
    finally:
        store.close()


def one_review_snapshot(reads: EvidenceReads | InMemoryEvidence) -> dict[str, float]:
    """The reads the in-memory evidence store answers: per user, named arms, no '*' rows."""
    flat: dict[str, float] = {}
    for user in USERS:
        flat[f"{user} reviews"] = reads.total_reviews(user)
        for kind, arms in (("checkpoint", CHECKPOINTS), ("lora", LORAS)):
            for (keyword, arm), stat in reads.arm_stats(user, kind, KEYWORDS, arms).items():
                for name, value in zip(("shown", "selected", "rejected"),
                                       (stat.shown, stat.selected, stat.rejected)):
                    flat[f"{user} {kind} {keyword} {arm} {name}"] = value
            base = reads.base_rate(user, kind)
            for name, value in zip(("shown", "selected", "rejected"),
                                   (base.shown, base.selected, base.rejected)):
                flat[f"{user} {kind} base {name}"] = value
    return flat


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_one_review_per_batch_agrees_with_the_in_memory_evidence(data: st.DataObject) -> None:
    """Histories as the simulator feeds them: each batch reviewed once, in one request (its
    result's selection is what the evidence store records), never clicked on again."""
    half_life = data.draw(st.sampled_from(HALF_LIVES))
    store = PreferenceStore.open(":memory:", half_life=half_life)
    evidence = InMemoryEvidence(half_life)
    try:
        for n in range(data.draw(st.integers(1, 10))):
            user = data.draw(st.sampled_from(USERS))
            keywords = tuple(data.draw(st.lists(st.sampled_from(KEYWORDS), max_size=3,
                                                unique=True)))
            batch = make_batch(f"b{n}", user_id=user, keywords=keywords)
            images = [make_image(batch, i, checkpoint=data.draw(st.sampled_from(CHECKPOINTS)),
                                 loras=data.draw(st.sampled_from(LORA_SETS)),
                                 status=data.draw(st.sampled_from(["done", "done", "failed"])))
                      for i in range(data.draw(st.integers(1, 4)))]
            store.add_batch(batch, images)
            steps = data.draw(review_steps([image.image_id for image in images]))
            result = store.apply_review(user, batch.batch_id, steps)
            if result.reviewed:
                evidence.record_review(keywords, [
                    ReviewedImage(image.checkpoint, image.image_id in result.selected,
                                  image.image_id in result.rejected,
                                  tuple(name for name, _ in image.loras))
                    for image in images if image.status == "done"], user_id=user)
        expected = one_review_snapshot(evidence)  # (d)
        assert one_review_snapshot(store) == pytest.approx(expected, rel=1e-9, abs=1e-12)
        assert one_review_snapshot(store.sql_aggregates()) == pytest.approx(
            expected, rel=1e-9, abs=1e-12)
        assert store.aggregates_equal_rebuild()
        store.rebuild_aggregates()
        assert one_review_snapshot(store) == pytest.approx(expected, rel=1e-9, abs=1e-12)
    finally:
        store.close()


def test_a_tampered_aggregate_is_detected_and_rebuild_repairs_it(tmp_path) -> None:
    store = PreferenceStore.open(tmp_path / "p.duckdb")
    try:
        batch = make_batch("b1")
        store.add_batch(batch, [make_image(batch, 0)])
        store.apply_feedback("alice", "b1", "select", ["b1-0"])
        assert store.aggregates_equal_rebuild()
        # ckA, the LoRA set sd15|none, ckA@5.0 and the negative term blurry, under cat, portrait and "*"
        assert store.compact_aggregates() == 12
        assert store.aggregates_equal_rebuild()
        # Simulate a bug/corruption by writing behind the writer's back (test only).
        store.read_sql("UPDATE preference_stats SET selected = 0 WHERE keyword = '*'")
        assert not store.aggregates_equal_rebuild()
        store.rebuild_aggregates()
        assert store.aggregates_equal_rebuild()
        assert store.arm_totals("alice", "checkpoint")["ckA"]["selected"] == 1
    finally:
        store.close()


def test_read_only_store_refuses_writes(tmp_path) -> None:
    path = tmp_path / "p.duckdb"
    PreferenceStore.open(path).close()
    store = PreferenceStore.open(path, read_only=True)
    try:
        with pytest.raises(StoreError, match="read-only"):
            store.rebuild_aggregates()
        assert store.total_reviews(None) == 0
    finally:
        store.close()
