"""One review of a run directory: the index, the decision log, the settings, and the actions on a record.

The log is written first and synced; only then is the index updated and the page told "saved". A crash
between the two leaves the index one entry behind, and the next refresh replays it from the log.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distill.engine.shards import list_shards

from distill.errors import UserError
from distill.review import scores as score_file
from distill.review.config import ReviewConfig
from distill.review.decisions import (
    APPROVE,
    CLEAR,
    DECISIONS,
    REJECT,
    DecisionRefused,
    decision_of,
    decisions_path,
    finish_entry,
    make_entry,
)
from distill.review.edits import check_edit, is_json_value
from distill.review.index import RunIndex
from distill.review.log import AppendLog
from distill.review.query import ListQuery, Search, list_page, progress
from distill.review.verdicts import filter_verdicts

MAX_REASON_CHARS = 500
MAX_EDIT_CHARS = 200_000


class RunReview:
    """``live``: index in the background while the page is served; otherwise read everything now (reports)."""

    def __init__(
        self, run_dir: str | Path, config: ReviewConfig, reviewer: str, *, live: bool = True
    ) -> None:
        self.run_dir = Path(run_dir)
        if not self.run_dir.is_dir():
            raise UserError(f"{self.run_dir}: RUN_DIR: no such directory")
        if not list_shards(self.run_dir):
            raise UserError(
                f"{self.run_dir}: no accepted/rejected/failed shards: is this a `distill generate` "
                "output directory?"
            )
        self.config = config
        self.reviewer = reviewer
        self.guideline = config.guideline_text()
        self.log = AppendLog(decisions_path(self.run_dir), what="review decisions")
        try:
            self.index = RunIndex(self.run_dir)
            self.scores: dict[tuple[str, int], score_file.Score] = {}
            self.reload_scores()
            if live:
                self.index.replay_log()
                self.index.start()
            else:
                self.index.refresh()
            self.search = Search(self.index)
        except BaseException:
            self.log.close()
            raise

    def close(self) -> None:
        self.index.close()
        self.log.close()

    def reload_scores(self) -> None:
        """Read the judge's scores file (after a scoring pass)."""
        self.scores = score_file.read(self.run_dir)
        self.index.load_scores({key: entry.score for key, entry in self.scores.items()})

    # -- reading ---------------------------------------------------------------------------------------

    def meta(self) -> dict[str, Any]:
        judge = self.config.judge
        return {
            "mode": "run",
            "run_dir": self.run_dir.name,
            "reviewer": self.reviewer,
            "guideline": self.guideline,
            "judge": {"model": judge.model, "threshold": judge.threshold} if judge else None,
            "finished_at": self.index.finished_at(),
        }

    def page(self, params: dict[str, str]) -> dict[str, Any]:
        return list_page(self.index, ListQuery.parse(params), self.search)

    def progress(self) -> dict[str, Any]:
        return {**progress(self.index), "indexing": self.index.indexing()}

    def _row(self, rowid: int) -> tuple:
        row = self.index.db.execute(
            "SELECT id, sample_index, status, reason, shard, offset, nbytes, agreement, score, decided_seq"
            " FROM rec WHERE rowid = ?",
            (rowid,),
        ).fetchone()
        if row is None:
            raise KeyError(rowid)
        return row

    def record(self, rowid: int) -> dict[str, Any]:
        row_id, sample_index, status, reason, shard, offset, nbytes, agreement, score, _ = self._row(rowid)
        record = self.index.read_record(shard, offset, nbytes)
        siblings = []
        for (
            other,
            other_status,
            other_reason,
            other_shard,
            other_offset,
            other_nbytes,
            decision,
            edited,
        ) in self.index.db.execute(
            "SELECT rowid, status, reason, shard, offset, nbytes, decision, edited FROM rec"
            " WHERE id = ? AND rowid != ? ORDER BY sample_index, rowid",
            (row_id, rowid),
        ):
            sibling = self.index.read_record(other_shard, other_offset, other_nbytes)
            siblings.append(
                {
                    "row": other,
                    "sample_index": sibling.get("sample_index"),
                    "status": other_status,
                    "reason": other_reason,
                    "decision": decision,
                    "edited": bool(edited),
                    "thinking": sibling.get("thinking"),
                    "output": sibling.get("output") if "output" in sibling else sibling.get("message"),
                    "response": sibling.get("response"),
                }
            )
        history = [
            {
                "seq": seq,
                "decision": decision,
                "reason": why,
                "reviewer": reviewer,
                "at": at,
                "by": by,
                "edited": output is not None,
            }
            for seq, decision, why, reviewer, at, by, output in self.index.db.execute(
                "SELECT seq, decision, reason, reviewer, at, by, output FROM decision"
                " WHERE id = ? AND sample_index = ? ORDER BY seq",
                (row_id, sample_index),
            )
        ]
        current = self._current(row_id, sample_index) if status == "accepted" else None
        output = record.get("output")
        return {
            "row": rowid,
            "id": row_id,
            "sample_index": sample_index,
            "status": status,
            "reason": reason,
            "instruction": record.get("instruction"),
            "thinking": record.get("thinking"),
            "output": output,
            "response": record.get("response"),
            "answer_is_json": isinstance(output, str) and is_json_value(output),
            "finish_reason": record.get("finish_reason"),
            "source_model": record.get("source_model"),
            "usage": record.get("usage"),
            "latency_ms": record.get("latency_ms"),
            "error_class": record.get("error_class"),
            "message": record.get("message"),
            "attempts": record.get("attempts"),
            "agreement": agreement,
            "score": score,
            "score_problem": getattr(self.scores.get((row_id, sample_index)), "problem", None),
            "verdicts": filter_verdicts(status, record, self.config.filters),
            "siblings": siblings,
            "history": history,
            "current": current,
        }

    def _current(self, row_id: str, sample_index: int) -> dict[str, Any] | None:
        row = self.index.db.execute(
            "SELECT d.seq, d.decision, d.reason, d.reviewer, d.at, d.by, d.thinking, d.output FROM rec"
            " JOIN decision AS d ON d.seq = rec.decided_seq"
            " WHERE rec.id = ? AND rec.sample_index = ? AND rec.status = 'accepted' AND rec.decision IS NOT NULL",
            (row_id, sample_index),
        ).fetchone()
        if row is None:
            return None
        seq, decision, reason, reviewer, at, by, thinking, output = row
        return {
            "seq": seq,
            "decision": decision,
            "reason": reason,
            "reviewer": reviewer,
            "at": at,
            "by": by,
            "edited": output is not None,
            "thinking": thinking,
            "output": output,
        }

    # -- deciding --------------------------------------------------------------------------------------

    def decide(self, rowid: int, body: dict[str, Any]) -> dict[str, Any]:
        """Validate, log durably, mirror into the index; returns what the page shows as saved."""
        decision = body.get("decision")
        if decision not in DECISIONS:
            raise DecisionRefused(f"decision must be one of {', '.join(DECISIONS)}")
        row_id, sample_index, status, _, shard, offset, nbytes, _, _, decided_seq = self._row(rowid)
        if status != "accepted":
            raise DecisionRefused(
                f"this record was {status} by the engine ({self._row(rowid)[3]}); "
                "only accepted records are reviewed"
            )
        reason = body.get("reason")
        if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_REASON_CHARS):
            raise DecisionRefused(f"reason: text of at most {MAX_REASON_CHARS} characters")
        current = self._current(row_id, sample_index)
        edit = None
        if decision == APPROVE:
            edit = self._edit_of(body, shard, offset, nbytes, rowid, current)
        elif body.get("edit") is not None:
            raise DecisionRefused("only an approval carries an edited answer")
        entry = make_entry(
            row_id,
            sample_index,
            decision,
            reviewer=self.reviewer,
            reason=reason if decision == REJECT else None,
            edit=edit,
        )
        seq = self.log.append(entry)
        key, logged = decision_of(entry, seq, str(self.log.path))
        self.index.apply_logged(key, logged)
        seen = body.get("seen_seq")
        replaced = None
        if current is not None and decided_seq is not None and seen != decided_seq:
            replaced = {"decision": current["decision"], "reviewer": current["reviewer"], "at": current["at"]}
        return {
            "saved": True,
            "seq": seq,
            "at": logged.at,
            "decision": None if decision == CLEAR else decision,
            "edited": logged.edited,
            "replaced_unseen": replaced,
        }

    def _edit_of(
        self,
        body: dict[str, Any],
        shard: str,
        offset: int,
        nbytes: int,
        rowid: int,
        current: dict[str, Any] | None,
    ) -> tuple[str, str] | None:
        edit = body.get("edit")
        if edit is None:
            if body.get("original") or current is None or not current["edited"]:
                return None
            return current["thinking"] or "", current["output"]  # approving again keeps the edit
        if (
            not isinstance(edit, dict)
            or not isinstance(edit.get("output"), str)
            or not isinstance(edit.get("thinking", ""), str)
        ):
            raise DecisionRefused("edit: an object with the answer text (output) and optional thinking")
        if len(edit["output"]) + len(edit.get("thinking", "")) > MAX_EDIT_CHARS:
            raise DecisionRefused(f"edit: at most {MAX_EDIT_CHARS} characters")
        record = self.index.read_record(shard, offset, nbytes)
        thinking = edit.get("thinking")
        if thinking is None:
            thinking = record.get("thinking") or ""
        checked = check_edit(
            instruction=str(record.get("instruction") or ""),
            thinking=thinking,
            output=edit["output"],
            original_output=str(record.get("output") or ""),
            filters=self.config.filters,
            is_duplicate=lambda digest: (
                self.index.db.execute(
                    "SELECT 1 FROM rec WHERE hash = ? AND rowid != ? AND status = 'accepted' LIMIT 1",
                    (digest, rowid),
                ).fetchone()
                is not None
            ),
        )
        if checked.problem is not None:
            raise DecisionRefused(f"not saved: {checked.problem}")
        return checked.thinking, checked.output

    def finish(self) -> dict[str, Any]:
        entry = finish_entry(self.reviewer)
        seq = self.log.append(entry)
        self.index.note_finished(entry["at"], seq)
        return {"saved": True, "finished_at": entry["at"]}

    def append_judge(self, entries: list[dict[str, Any]]) -> None:
        """The judge stage's low_score decisions, logged and mirrored like a person's."""
        for entry, seq in zip(entries, self.log.append_many(entries), strict=True):
            key, logged = decision_of(entry, seq, str(self.log.path))
            self.index.apply_logged(key, logged)

    def report(self) -> dict[str, Any]:
        """Counts, and how people's decisions compare with the judge's scores (when there are any)."""
        counts = progress(self.index)["counts"]
        people = self.index.db.execute(
            "SELECT count(*) FROM rec WHERE status = 'accepted' AND decided_by = 'person'"
        ).fetchone()[0]
        report: dict[str, Any] = {
            "counts": counts,
            "decided_by_people": people,
            "finished_at": self.index.finished_at(),
            "judge": None,
        }
        judge = self.config.judge
        scored = counts["scored"]
        if scored:
            threshold = judge.threshold if judge is not None else None
            rows = self.index.db.execute(
                "SELECT decision, score FROM rec WHERE status = 'accepted' AND decided_by = 'person'"
                " AND score IS NOT NULL"
            ).fetchall()
            mean = {}
            for name, kind in (("approved", APPROVE), ("rejected", REJECT)):
                values = [score for decision, score in rows if decision == kind]
                mean[name] = round(sum(values) / len(values), 2) if values else None
            compared = overruled = 0
            if threshold is not None:
                for decision, score in rows:
                    compared += 1
                    judge_keeps = score >= threshold
                    overruled += (decision == APPROVE) != judge_keeps
            report["judge"] = {
                "model": judge.model if judge else None,
                "threshold": threshold,
                "scored": scored,
                "judge_rejected": counts["judge_rejected"],
                "compared": compared,
                "overruled": overruled,
                "overrule_rate": overruled / compared if compared else None,
                "mean_score_of_people_approved": mean["approved"],
                "mean_score_of_people_rejected": mean["rejected"],
            }
        return report
