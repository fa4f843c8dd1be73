"""`distill run` with ``review: required``: stop after generation until people have reviewed the records.

The pipeline calls `require_review` before its export stage. It passes once the review is marked finished
(the page's "Finish review" button, or ``distill review RUN_DIR --finish``) and at least one record is
approved; the export then keeps only approved records, edited answers in place. `review_key` goes into the
export stage's key, so a decision changed after the run went on makes the next `distill run` export (and
train, and evaluate) again.
"""

from __future__ import annotations

from pathlib import Path

from distill.errors import UserError
from distill.review.decisions import APPROVE, APPROVED, load_state, state_fingerprint

EXPORT_MODE = APPROVED
STOPPED_FOR_REVIEW = 5  # the exit status: the same as any other resumable stop


class ReviewPending(UserError):
    """Generation is done and the records wait for people; run the same command again after the review."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=STOPPED_FOR_REVIEW)


def require_review(run_dir: str | Path) -> None:
    """Raise `ReviewPending` unless the review of ``run_dir`` is finished with at least one approval."""
    state = load_state(run_dir)
    approved = sum(1 for decision in state.latest.values() if decision.decision == APPROVE)
    how = (
        f"review the records with `distill review {run_dir}` (add --config with your guideline), press "
        f'"Finish review" on the page or run `distill review {run_dir} --finish`, then run this command again'
    )
    if state.finished_at is None:
        raise ReviewPending(f"stopped for review ({approved} approved so far): {how}")
    if approved == 0:
        raise ReviewPending(f"the review was marked finished but approves no record: {how}")


def review_key(run_dir: str | Path) -> str:
    """What the exported dataset depends on: the latest decision of every record."""
    return state_fingerprint(run_dir)
