"""Review decisions on a run's accepted records: the log's entries, their meaning, and the latest state.

``<run dir>/review/decisions.jsonl`` is the only place decisions live (see `distill.review.log` for why it
survives `kill -9`); the engine's shards are never touched. One entry per decision:

    {"at": "...Z", "reviewer": "ana", "id": "c1", "sample_index": 0, "decision": "approve",
     "reason": null, "edit": {"thinking": "...", "output": "..."} | null, "by": "person" | "judge"}

``decision`` is ``approve`` (with ``edit``: approve the edited answer instead), ``reject`` (``reason``
optional; the judge's threshold writes ``low_score``) or ``clear`` (back to unreviewed). A finish marker
``{"event": "finish", ...}`` says the reviewer is done, which lets `distill run` go on past its review stop.
The same record decided twice keeps the later entry; both stay in the log.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.engine.manifest import utc_now
from distill.engine.parsing import format_full_output

from distill.errors import UserError
from distill.review.log import read_entries

REVIEW_DIR = "review"
DECISIONS_NAME = "decisions.jsonl"

APPROVE, REJECT, CLEAR = "approve", "reject", "clear"
DECISIONS = (APPROVE, REJECT, CLEAR)
PERSON, JUDGE = "person", "judge"
LOW_SCORE = "low_score"
FINISH = "finish"

APPROVED, EXCLUDE_REJECTED = "approved", "exclude-rejected"
EXPORT_MODES = (APPROVED, EXCLUDE_REJECTED)

Key = tuple[str, int]


class DecisionRefused(ValueError):
    """A decision (or preference) that was not saved: the message says why, and the page shows it."""


def decisions_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / REVIEW_DIR / DECISIONS_NAME


@dataclass(frozen=True, slots=True)
class Decision:
    """The state one entry leaves a record in."""

    decision: str
    reviewer: str
    at: str
    by: str = PERSON
    reason: str | None = None
    thinking: str | None = None  # edited thinking, when edited
    output: str | None = None  # edited answer, when edited
    seq: int = 0  # the entry's end offset in the log: later entries have larger ones

    @property
    def edited(self) -> bool:
        return self.output is not None


def make_entry(
    row_id: str,
    sample_index: int,
    decision: str,
    *,
    reviewer: str,
    by: str = PERSON,
    reason: str | None = None,
    edit: tuple[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A log entry, checked: what the server and the judge stage append."""
    if decision not in DECISIONS:
        raise ValueError(f"decision must be one of {', '.join(DECISIONS)}, got {decision!r}")
    if edit is not None and decision != APPROVE:
        raise ValueError("only an approval carries an edited answer")
    entry: dict[str, Any] = {
        "at": utc_now(),
        "reviewer": reviewer,
        "by": by,
        "id": row_id,
        "sample_index": sample_index,
        "decision": decision,
        "reason": reason or None,
    }
    if edit is not None:
        entry["edit"] = {"thinking": edit[0], "output": edit[1]}
    if extra:
        entry.update(extra)
    return entry


def finish_entry(reviewer: str) -> dict[str, Any]:
    return {"at": utc_now(), "reviewer": reviewer, "event": FINISH}


def decision_of(entry: dict[str, Any], seq: int, where: str) -> tuple[Key, Decision]:
    """Validate one decision entry read back from the log."""
    try:
        key = (str(entry["id"]), int(entry["sample_index"]))
        decision = entry["decision"]
        if decision not in DECISIONS:
            raise ValueError(f"unknown decision {decision!r}")
        edit = entry.get("edit")
        thinking = output = None
        if edit is not None:
            thinking, output = str(edit.get("thinking") or ""), str(edit["output"])
        return key, Decision(
            decision,
            str(entry.get("reviewer") or ""),
            str(entry.get("at") or ""),
            entry.get("by") or PERSON,
            entry.get("reason"),
            thinking,
            output,
            seq,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UserError(f"{where}: not a review decision ({exc})") from None


class ReviewState:
    """The latest decision per record, folded from the log in order (later wins)."""

    def __init__(self) -> None:
        self.latest: dict[Key, Decision] = {}
        self.finished_at: str | None = None
        self.entries = 0
        self.offset = 0

    def apply(self, entry: dict[str, Any], seq: int, where: str) -> tuple[Key, Decision] | None:
        self.entries += 1
        self.offset = seq
        if entry.get("event") == FINISH:
            self.finished_at = str(entry.get("at") or "")
            return None
        key, decision = decision_of(entry, seq, where)
        if decision.decision == CLEAR:
            self.latest.pop(key, None)
        else:
            self.latest[key] = decision
        return key, decision


def load_state(run_dir: str | Path) -> ReviewState:
    """Everything the log says, up to its last complete line."""
    path = decisions_path(run_dir)
    state = ReviewState()
    for seq, entry in read_entries(path):
        state.apply(entry, seq, str(path))
    return state


def state_fingerprint(run_dir: str | Path) -> str:
    """A hash of the latest decisions (not of the log): what an export made with them depends on."""
    state = load_state(run_dir)
    digest = hashlib.sha256()
    for key in sorted(state.latest):
        d = state.latest[key]
        digest.update(repr((key, d.decision, d.thinking, d.output)).encode("utf-8"))
    return digest.hexdigest()[:20]


class ReviewFilter:
    """What an export keeps of a run's accepted records under a review mode; counts what it did.

    ``approved``: only records whose latest decision is an approval. ``exclude-rejected``: every record but
    those whose latest decision is a rejection (by a person, or the judge's ``low_score``). An approved edit
    replaces the record's thinking, answer and full_output.
    """

    def __init__(self, run_dir: str | Path, mode: str) -> None:
        if mode not in EXPORT_MODES:
            raise UserError(f"--review: unknown mode {mode!r} (choose from {', '.join(EXPORT_MODES)})")
        self.mode = mode
        self.latest = load_state(run_dir).latest
        self.kept = self.left_out = self.edited = 0

    def __call__(self, record: dict[str, Any]) -> dict[str, Any] | None:
        """The record as it should be exported, or None to leave it out."""
        decision = self.latest.get((str(record["id"]), int(record["sample_index"])))
        if (decision is None and self.mode == APPROVED) or (
            decision is not None and decision.decision == REJECT
        ):
            self.left_out += 1
            return None
        self.kept += 1
        if decision is None or not decision.edited:
            return record
        self.edited += 1
        thinking = decision.thinking if decision.thinking is not None else record.get("thinking") or ""
        return {
            **record,
            "thinking": thinking,
            "output": decision.output,
            "full_output": format_full_output(thinking, decision.output),
        }

    def summary(self) -> dict[str, Any]:
        return {"mode": self.mode, "kept": self.kept, "left_out": self.left_out, "edited": self.edited}


def apply_review(
    run_dir: str | Path, records: Iterable[dict[str, Any]], mode: str
) -> Iterator[dict[str, Any]]:
    """The records an export keeps under ``mode`` (see `ReviewFilter`)."""
    keep = ReviewFilter(run_dir, mode)
    for record in records:
        kept = keep(record)
        if kept is not None:
            yield kept
