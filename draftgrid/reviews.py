"""Reviews: what the user picked and rejected in a batch, stored as one transaction per click.

Every id is checked against the batch before anything is written, so a bad request writes
nothing; a review's steps (unselect, select, reject, reject all, viewed) are one store write, so
a crash never leaves half a click.
"""

from __future__ import annotations

from draftgrid.batch_reader import BatchReader
from draftgrid.batch_state import BatchState
from draftgrid.errors import InvalidRequest, NotFound
from draftgrid.schemas import FeedbackRequest
from learning.models import FeedbackAction, FeedbackResult
from learning.store.errors import ImageNotDoneError, UnknownBatchError, UnknownImageError
from learning.store.preference_store import PreferenceStore

ReviewSteps = list[tuple[FeedbackAction, list[str]]]


def review_steps(req: FeedbackRequest) -> ReviewSteps:
    """The store steps of one review, in the order they apply (pure). A request that marks
    nothing still counts as having seen the batch ("viewed")."""
    marks: ReviewSteps = [(action, ids) for action, ids in
                          (("unselect", req.unselected), ("select", req.selected), ("reject", req.rejected)) if ids]
    steps = marks + ([("reject_all", [])] if req.reject_all else [])
    if req.viewed or not steps:
        steps.append(("viewed", []))
    return steps


class Reviews:
    """Applies reviews of one user's batches."""

    def __init__(self, store: PreferenceStore, state: BatchState, reader: BatchReader) -> None:
        self._store = store
        self._state = state
        self._reader = reader

    def feedback(self, user_id: str, req: FeedbackRequest) -> FeedbackResult:
        """Apply a review; every id is checked first so a bad request writes nothing."""
        view = self._reader.known_view(user_id, req.batch_id)
        known = {v.record.image_id for v in view.images}
        unknown = sorted({i for i in (*req.selected, *req.unselected, *req.rejected) if i not in known})
        if unknown:
            raise InvalidRequest(f"images not in batch {req.batch_id}: {', '.join(unknown[:5])}")
        both = set(req.selected) & (set(req.rejected) | set(req.unselected))
        if both:
            raise InvalidRequest(f"images both selected and unselected/rejected: {', '.join(sorted(both)[:5])}")
        return self._apply(user_id, req.batch_id, review_steps(req))

    def toggle(self, user_id: str, batch_id: str, index: int) -> FeedbackResult | None:
        """A click on the gallery's `index`-th thumbnail: select it, or unselect it if selected."""
        done = [v for v in self._reader.view(user_id, batch_id).images if v.status == "done"]
        if not 0 <= index < len(done):
            return None
        target = done[index]
        return self._apply(user_id, batch_id, [("unselect" if target.state == "selected" else "select",
                                                [target.record.image_id])])

    def favourite(self, user_id: str, image_id: str, on: bool) -> FeedbackResult:
        """Make the user's image a favourite (which selects it) or not (it stays selected); one
        click, one transaction, idempotent: a repeat writes nothing. 404 for an unknown or
        another user's image, 422 for one that is not done."""
        image = self._store.get_image(image_id, user_id)
        if image is None:
            raise NotFound(f"image {image_id} not found")
        if image.status != "done":
            raise InvalidRequest(f"image {image_id} is {image.status}; only a finished image can be a favourite")
        view = self._reader.view(user_id, image.batch_id)
        current = next(v for v in view.images if v.record.image_id == image_id)
        if current.favourite == on:
            return FeedbackResult(batch_id=image.batch_id,
                                  selected=frozenset(v.record.image_id for v in view.images if v.state == "selected"),
                                  rejected=frozenset(v.record.image_id for v in view.images if v.state == "rejected"),
                                  reviewed=view.batch.reviewed_at is not None, changed=False,
                                  favourites=frozenset(v.record.image_id for v in view.images if v.favourite))
        return self._apply(user_id, image.batch_id, [("favourite" if on else "unfavourite", [image_id])])

    def _apply(self, user_id: str, batch_id: str, steps: ReviewSteps) -> FeedbackResult:
        try:
            return self._store.apply_review(user_id, batch_id, steps)
        except (UnknownBatchError, UnknownImageError, ImageNotDoneError) as exc:
            raise InvalidRequest(str(exc)) from exc
        finally:
            self._state.reviewed(batch_id)
