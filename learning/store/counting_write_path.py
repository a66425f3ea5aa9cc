"""The counting rules in Python, for the write path; twin: `counting_rebuild_sql` (the rebuild).

The write path applies them one batch at a time, in microseconds (`fact_writes`); batch
snapshots use `fold_states` for the selection states they show. The same rules exist as SQL in
`learning.store.counting_rebuild_sql` for the bulk rebuild over millions of facts; DuckDB needs
~10 ms just to plan that windowed query, too slow for a click. The hypothesis tests in
tests/learning/test_store_agreement.py hold the two to the same answers.

* A batch is reviewed by its first select, reject, reject_all or viewed.
* An image's state: select → selected, reject → rejected, unselect → none; reject_all rejects
  every image done before it that is not selected. Favourite selects the image too (and reviews
  the batch); unfavourite leaves the state as it is.
* An image is a favourite when the last of its favourite, unfavourite, unselect and reject is a
  favourite: unselecting or rejecting a favourite ends it, so a favourite is always selected.
* An image contributes once its batch is reviewed and it is done: shown 1, selected 1 if
  selected, rejected 1 if rejected; a favourite counts as FAVOURITE_WEIGHT selected images
  (shown and selected FAVOURITE_WEIGHT each) — to every keyword of the batch plus '*', and to each arm it
  feeds (`learning.arms.image_arms`: its checkpoint, each of its LoRAs, its LoRA combination under
  the batch's family, its checkpoint × CFG unless the user set the CFG, each negative term).
* An image counts from the later of its finish and its batch's first review (`counted_from`).
  A reset of a keyword (or of everything, the '*' rows included) that is not undone hides, from
  that keyword's rows, the whole contribution of every image that counted before the reset —
  its later clicks too; an import counts from its own number like an image. Undoing a reset
  brings back exactly what it hid that no other active reset hides (`hidden_keywords`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from learning.arms import image_arms
from learning.models import BatchRecord, ImageRecord

REVIEW_ACTIONS = ("select", "reject", "reject_all", "viewed", "favourite")
# the clicks that set an image's selection state (favourite selects; unfavourite leaves it)
STATE_CLICKS = ("select", "unselect", "reject", "favourite")
# the clicks that decide whether an image is a favourite (the last of them)
FAVOURITE_MARKS = ("favourite", "unfavourite", "unselect", "reject")
CLICK_ACTIONS = ("select", "unselect", "reject", "favourite", "unfavourite")
BATCH_ACTIONS = ("reject_all", "viewed")
# How many selections a favourite is worth: a favourited image counts as this many shown AND
# selected images, so it weighs more than a plain selection while a rate stays within [0, 1]
# (selected never exceeds shown). An integer because the plain counts are BIGINT and the
# rebuild must reproduce the write path exactly. The SQL rebuild uses the same constant
# (learning.store.counting_rebuild_sql); docs/DESIGN-NOTES.md gives the why.
FAVOURITE_WEIGHT = 2
# The keyword whose rows hold an arm's totals over all prompts.
ALL_KEYWORDS = "*"

_CLICK_STATE = {"select": "selected", "unselect": "none", "reject": "rejected", "favourite": "selected"}
assert tuple(_CLICK_STATE) == STATE_CLICKS

ArmKey = tuple[str, str, str]  # (keyword, arm_kind, arm)
Counts = tuple[int, int, int]  # (shown, selected, rejected)


@dataclass(frozen=True)
class ImageFacts:
    """What the rules need of an image: the (arm_kind, arm) rows it feeds besides the keyword;
    `finished_seq` orders its finish among the facts."""

    image_id: str
    arms: tuple[tuple[str, str], ...]
    finished_seq: int | None


def image_facts(batch: BatchRecord, image: ImageRecord, finished_seq: int | None) -> ImageFacts:
    """An image's facts for the rules, its arms spelled by `learning.arms`."""
    cfg = None if batch.cfg_explicit else image.cfg
    arms = image_arms(image.checkpoint, image.loras, batch.family, cfg, batch.negative_prompt)
    return ImageFacts(image.image_id, arms, finished_seq)


@dataclass(frozen=True)
class FeedbackFact:
    """One stored feedback row; `image_id` is None for batch-level actions."""

    ord: int
    image_id: str | None
    action: str


@dataclass(frozen=True)
class ResetFact:
    """A reset that is not undone: `keyword` None covers every keyword and the '*' rows."""

    ord: int
    keyword: str | None


def counted_from(image: ImageFacts, reviewed_ord: int | None) -> int | None:
    """The fact number from which the image counts: the later of its finish and its batch's
    first review (None while it does not count)."""
    if image.finished_seq is None or reviewed_ord is None:
        return None
    return max(image.finished_seq, reviewed_ord)


def reviewed_ord(feedback: Iterable[FeedbackFact]) -> int | None:
    """The number of a batch's first reviewing feedback (None: not reviewed)."""
    return min((f.ord for f in feedback if f.action in REVIEW_ACTIONS), default=None)


def hidden_keywords(
    counted_ord: int | None, keywords: Sequence[str], resets: Iterable[ResetFact]
) -> frozenset[str]:
    """Those of `keywords` (and '*') whose rows no longer get what counted from `counted_ord`:
    an active reset covering them came after it."""
    if counted_ord is None:
        return frozenset()
    later = [r.keyword for r in resets if r.ord > counted_ord]
    if None in later:
        return frozenset((*keywords, ALL_KEYWORDS))
    return frozenset(k for k in keywords if k in later)


def fold_states(images: Sequence[ImageFacts], feedback: Iterable[FeedbackFact]) -> dict[str, str]:
    """Every image's state after the feedback, replayed in order."""
    states = {image.image_id: "none" for image in images}
    finished = {image.image_id: image.finished_seq for image in images}
    for fact in sorted(feedback, key=lambda f: f.ord):
        if fact.action in _CLICK_STATE and fact.image_id in states:
            states[fact.image_id] = _CLICK_STATE[fact.action]
        elif fact.action == "reject_all":
            for image_id, state in states.items():
                done_at = finished[image_id]
                if state != "selected" and done_at is not None and done_at < fact.ord:
                    states[image_id] = "rejected"
    return states


def fold_favourites(feedback: Iterable[FeedbackFact]) -> frozenset[str]:
    """The images that are favourites after the feedback: the last of their FAVOURITE_MARKS is
    a favourite (SQL twin: the `favourite_mark` macro of the schema)."""
    last: dict[str, str] = {}
    for fact in sorted(feedback, key=lambda f: f.ord):
        if fact.action in FAVOURITE_MARKS and fact.image_id is not None:
            last[fact.image_id] = fact.action
    return frozenset(image_id for image_id, action in last.items() if action == "favourite")


def contribution(counted: bool, state: str, favourite: bool = False) -> Counts:
    """What one image adds to each of its (keyword, arm) rows."""
    if not counted:
        return (0, 0, 0)
    if favourite:
        return (FAVOURITE_WEIGHT, FAVOURITE_WEIGHT, 0)
    return (1, int(state == "selected"), int(state == "rejected"))


def contributions(
    images: Sequence[ImageFacts], states: dict[str, str], reviewed: bool,
    favourites: frozenset[str] = frozenset(),
) -> dict[str, Counts]:
    """Each image's contribution given the batch's review status, the images' states and which
    of them are favourites."""
    return {
        image.image_id: contribution(reviewed and image.finished_seq is not None,
                                     states[image.image_id], image.image_id in favourites)
        for image in images
    }


def arm_keys(keywords: Sequence[str], image: ImageFacts) -> list[ArmKey]:
    """Every aggregate row an image feeds: (each keyword and '*') × its arms."""
    return [(keyword, kind, arm) for keyword in (*keywords, ALL_KEYWORDS) for kind, arm in image.arms]


def arm_changes(
    keywords: Sequence[str],
    images: Sequence[ImageFacts],
    before: dict[str, Counts],
    after: dict[str, Counts],
    hidden: Mapping[str, frozenset[str]] | None = None,
) -> dict[ArmKey, Counts]:
    """Per aggregate row, the change from the images' contributions before to after, leaving
    out the keywords a reset hides for an image (`hidden`: image_id → `hidden_keywords`)."""
    changes: dict[ArmKey, list[int]] = defaultdict(lambda: [0, 0, 0])
    for image in images:
        old, new = before[image.image_id], after[image.image_id]
        if old == new:
            continue
        shown, selected, rejected = new[0] - old[0], new[1] - old[1], new[2] - old[2]
        skip = hidden.get(image.image_id, frozenset()) if hidden else frozenset()
        for key in arm_keys(keywords, image):
            if key[0] in skip:
                continue
            total = changes[key]
            total[0] += shown
            total[1] += selected
            total[2] += rejected
    return {key: (d[0], d[1], d[2]) for key, d in changes.items() if any(d)}
