"""Blind student-versus-teacher review of an evaluation directory (`distill eval` output).

Each (item, student) pair whose two answers exist is shown as A and B in an order fixed by a keyed hash, so
a reload shows the same order and no one can guess it from the position. The names come back only with the
saved preference. ``<eval dir>/review/preferences.jsonl`` is an append-only log like the run review's
(later entry wins); the report compares each preference with the judge's scores of the same two answers.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.evaluator.evalset import load_eval_set

from distill.errors import UserError
from distill.review.decisions import REVIEW_DIR, DecisionRefused, utc_now
from distill.review.log import AppendLog, read_entries

PREFERENCES_NAME = "preferences.jsonl"
SALT_NAME = "order.key"
TEACHER, STUDENT, TIE = "teacher", "student", "tie"
CHOICES = ("A", "B", "tie")
DEFAULT_MARGIN = 0.1  # the seed's win margin: score differences up to it are ties


@dataclass(frozen=True, slots=True)
class Pair:
    n: int
    item: str
    student: str
    teacher_answer: str
    student_answer: str
    teacher_score: float | None
    student_score: float | None


def judge_preference(teacher_score: float | None, student_score: float | None, margin: float) -> str | None:
    if teacher_score is None or student_score is None:
        return None
    if abs(teacher_score - student_score) <= margin:
        return TIE
    return TEACHER if teacher_score > student_score else STUDENT


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: not found: is this a `distill eval` output directory?") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read it as JSON: {exc}") from None


class EvalReview:
    def __init__(self, eval_dir: str | Path, reviewer: str) -> None:
        self.eval_dir = Path(eval_dir)
        if not self.eval_dir.is_dir():
            raise UserError(f"{self.eval_dir}: --eval: no such directory")
        self.reviewer = reviewer
        report = _read_json(self.eval_dir / "report.json")
        config = report.get("config") or {}
        self.margin = float((config.get("roi") or {}).get("win_margin", DEFAULT_MARGIN))
        students = list(report.get("students") or {})
        items_path = self.eval_dir / "items.jsonl"
        try:
            lines = items_path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise UserError(f"{items_path}: not found: is this a `distill eval` output directory?") from None
        self.inputs, self.references = self._eval_set(config)
        self.pairs: list[Pair] = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                item = str(row["id"])
            except (ValueError, KeyError, TypeError) as exc:
                raise UserError(f"{items_path}:{number}: not an evaluation item ({exc})") from None
            teacher = row.get(f"{TEACHER}_answer")
            for student in students:
                answer = row.get(f"{student}_answer")
                if isinstance(teacher, str) and isinstance(answer, str):
                    self.pairs.append(
                        Pair(
                            len(self.pairs),
                            item,
                            student,
                            teacher,
                            answer,
                            row.get(f"{TEACHER}_score"),
                            row.get(f"{student}_score"),
                        )
                    )
        if not self.pairs:
            raise UserError(
                f"{items_path}: no item has both a teacher answer and a student answer to compare "
                "(was the evaluation run with a teacher?)"
            )
        review_dir = self.eval_dir / REVIEW_DIR
        review_dir.mkdir(parents=True, exist_ok=True)
        self.key = self._order_key(review_dir / SALT_NAME)
        self.log = AppendLog(review_dir / PREFERENCES_NAME, what="preferences")
        self.latest: dict[tuple[str, str], dict[str, Any]] = {}
        for _, entry in read_entries(self.log.path):
            self.latest[(str(entry.get("item")), str(entry.get("student")))] = entry

    @staticmethod
    def _eval_set(config: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
        """Inputs and references by item id, from the eval set the report names (if it is still there)."""
        path = config.get("eval_set")
        if not path or not Path(path).is_file():
            return {}, {}
        items = load_eval_set(
            path,
            config.get("task", ""),
            id_field=config.get("id_field", "id"),
            input_field=config.get("input_field", "input"),
            reference_field=config.get("reference_field", "reference"),
        )
        return {i.id: i.instruction for i in items}, {i.id: i.reference for i in items}

    @staticmethod
    def _order_key(path: Path) -> bytes:
        if not path.exists():
            path.write_text(secrets.token_hex(16) + "\n")
        return path.read_text().strip().encode()

    def close(self) -> None:
        self.log.close()

    def teacher_first(self, pair: Pair) -> bool:
        digest = hmac.new(self.key, f"{pair.item}\x1f{pair.student}".encode(), hashlib.sha256).digest()
        return digest[0] & 1 == 0

    def meta(self) -> dict[str, Any]:
        return {"mode": "eval", "eval_dir": self.eval_dir.name, "reviewer": self.reviewer}

    def _preferred(self, pair: Pair) -> str | None:
        entry = self.latest.get((pair.item, pair.student))
        return entry["preferred"] if entry else None

    def page(self, params: dict[str, str]) -> dict[str, Any]:
        decided = params.get("decided", "")
        chosen = [
            p for p in self.pairs if not decided or (decided == "yes") == (self._preferred(p) is not None)
        ]
        try:
            offset, limit = int(params.get("offset", 0)), int(params.get("limit", 50))
        except ValueError:
            raise DecisionRefused("offset and limit are whole numbers") from None
        rows = [
            {"n": p.n, "item": p.item, "student": p.student, "preferred": self._preferred(p)}
            for p in chosen[offset : offset + max(1, min(limit, 200))]
        ]
        return {"total": len(chosen), "offset": offset, "limit": limit, "rows": rows}

    def _reveal(self, pair: Pair, entry: dict[str, Any]) -> dict[str, Any]:
        first = self.teacher_first(pair)
        judge = judge_preference(pair.teacher_score, pair.student_score, self.margin)
        return {
            "preferred": entry["preferred"],
            "at": entry["at"],
            "reviewer": entry["reviewer"],
            "a": TEACHER if first else STUDENT,
            "b": STUDENT if first else TEACHER,
            "judge": judge,
            "teacher_score": pair.teacher_score,
            "student_score": pair.student_score,
            "agrees": None if judge is None else judge == entry["preferred"],
        }

    def pair(self, n: int) -> dict[str, Any]:
        if not 0 <= n < len(self.pairs):
            raise KeyError(n)
        pair = self.pairs[n]
        first = self.teacher_first(pair)
        entry = self.latest.get((pair.item, pair.student))
        return {
            "n": n,
            "item": pair.item,
            "student": pair.student,
            "input": self.inputs.get(pair.item),
            "reference": self.references.get(pair.item),
            "a": pair.teacher_answer if first else pair.student_answer,
            "b": pair.student_answer if first else pair.teacher_answer,
            "reveal": self._reveal(pair, entry) if entry else None,
        }

    def prefer(self, n: int, body: dict[str, Any]) -> dict[str, Any]:
        if not 0 <= n < len(self.pairs):
            raise KeyError(n)
        choice = body.get("choice")
        if choice not in CHOICES:
            raise DecisionRefused(f"choice must be one of {', '.join(CHOICES)}")
        pair = self.pairs[n]
        first = self.teacher_first(pair)
        if choice == "tie":
            preferred = TIE
        else:
            preferred = TEACHER if (choice == "A") == first else STUDENT
        entry = {
            "at": utc_now(),
            "reviewer": self.reviewer,
            "item": pair.item,
            "student": pair.student,
            "choice": choice,
            "preferred": preferred,
            "teacher_shown_as": "A" if first else "B",
        }
        self.log.append(entry)
        self.latest[(pair.item, pair.student)] = entry
        return {"saved": True, "reveal": self._reveal(pair, entry)}

    def report(self) -> dict[str, Any]:
        by_student: dict[str, dict[str, int]] = {}
        compared = agree = 0
        for pair in self.pairs:
            entry = self.latest.get((pair.item, pair.student))
            if entry is None:
                continue
            counts = by_student.setdefault(pair.student, {TEACHER: 0, STUDENT: 0, TIE: 0})
            counts[entry["preferred"]] += 1
            judge = judge_preference(pair.teacher_score, pair.student_score, self.margin)
            if judge is not None:
                compared += 1
                agree += judge == entry["preferred"]
        return {
            "pairs": len(self.pairs),
            "decided": sum(sum(c.values()) for c in by_student.values()),
            "by_student": by_student,
            "margin": self.margin,
            "judge_agreement": {
                "compared": compared,
                "agree": agree,
                "rate": agree / compared if compared else None,
            },
        }
