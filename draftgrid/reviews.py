"""Reviews: what the user picked and rejected in a batch, stored as one transaction per click.

Every id is checked against the batch before anything is written, so a bad request writes
nothing; a review's steps (unselect, select, reject, reject all, viewed) are one store write, so
a crash never leaves half a click.
"""

from __future__ import annotations

from draftgrid.batch_reader import BatchReader
from draftgrid.batch_state import BatchState
from draftgrid.errors import InvalidRequest
from draftgrid.schemas import FeedbackRequest
from learning.models import FeedbackAction, FeedbackResult
from learning.store.errors import UnknownBatchError, UnknownImageError
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

    def _apply(self, user_id: str, batch_id: str, steps: ReviewSteps) -> FeedbackResult:
        try:
            return self._store.apply_review(user_id, batch_id, steps)
        except (UnknownBatchError, UnknownImageError) as exc:
            raise InvalidRequest(str(exc)) from exc
        finally:
            self._state.reviewed(batch_id)
