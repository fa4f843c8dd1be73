"""The held-out evaluation set: JSONL rows with an id, an input and a reference answer, checked up front.

A reference may be text or a JSON object (the contract task's structured answer); an object is kept both as
canonical JSON text (what the judge reads) and as a dict (what field F1 compares). Any row the evaluator
could not grade — no input, no reference, a repeated id — is an error naming its file and line, before a
single paid call is made.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.engine.prompts import build_instruction

from distill.errors import UserError


@dataclass(frozen=True, slots=True)
class EvalItem:
    id: str
    input: str
    reference: str
    instruction: str  # what the student is asked: engine.prompts.build_instruction(task, input)
    structured: dict[str, Any] | None = None  # the reference as a JSON object, when it is one
    line: int = 0


def _as_object(value: Any) -> dict[str, Any] | None:
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return None
        return parsed if isinstance(parsed, dict) else None
    return None


def load_eval_set(
    path: str | Path,
    task: str,
    *,
    id_field: str = "id",
    input_field: str = "input",
    reference_field: str = "reference",
    limit: int | None = None,
) -> list[EvalItem]:
    """Read and validate ``path``; ``limit`` keeps the first N rows (after checking them all)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UserError(f"{path}: eval set not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read the eval set as UTF-8 text: {exc}") from None
    items: list[EvalItem] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{where}: not valid JSON: {exc.msg}") from None
        if not isinstance(row, dict):
            raise UserError(f"{where}: each line must be a JSON object, got {type(row).__name__}")
        text = row.get(input_field)
        if not isinstance(text, str) or not text.strip():
            raise UserError(f"{where}: {input_field}: missing or empty; every eval row needs an input")
        reference = row.get(reference_field)
        if reference is None or (isinstance(reference, str) and not reference.strip()):
            raise UserError(
                f"{where}: {reference_field}: missing or empty; every eval row needs a reference answer "
                "(the judge and the task metrics compare against it)"
            )
        structured = _as_object(reference)
        if not isinstance(reference, str):
            reference = json.dumps(reference, ensure_ascii=False)
        item_id = row.get(id_field, f"line-{number}")
        item_id = str(item_id)
        if item_id in seen:
            raise UserError(f"{where}: {id_field}: {item_id!r} already used on line {seen[item_id]}")
        seen[item_id] = number
        items.append(EvalItem(item_id, text, reference, build_instruction(task, text), structured, number))
    if not items:
        raise UserError(f"{path}: the eval set is empty")
    return items[:limit] if limit else items
