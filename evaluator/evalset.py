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

from distill.engine.inputs import derive_id
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


@dataclass(frozen=True, slots=True)
class TaskRow:
    """One row of a task's JSONL file: its id, its input, its reference answer when it has one, its line."""

    id: str
    input: str
    reference: Any | None  # text or a JSON value, as the file gives it
    line: int


def _id_of(row: dict[str, Any], id_field: str | None, text: str, where: str) -> str:
    value = row.get(id_field) if id_field else None
    if value is None:
        return derive_id(text)  # no id: the input text's hash, as the engine derives it
    if isinstance(value, bool) or not isinstance(value, str | int) or not str(value).strip():
        raise UserError(f"{where}: {id_field}: must be a non-empty string or an integer, got {value!r}")
    return str(value)


def read_task_rows(
    path: str | Path,
    *,
    id_field: str | None = "id",
    input_field: str = "input",
    reference_field: str = "reference",
    what: str = "eval set",
) -> list[TaskRow]:
    """Every row of a JSONL file, checked: a JSON object per line with a non-empty input and a unique id.

    Errors name the file, the line and the field (``what`` says which file it is in the message).
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UserError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise UserError(f"{path}: {what} is a directory, not a JSONL file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read the {what} as UTF-8 text: {exc}") from None
    rows: list[TaskRow] = []
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
            present = ", ".join(sorted(row)) or "none"
            raise UserError(
                f"{where}: {input_field}: missing or empty; every row needs an input "
                f"(this row's fields: {present}; input_field names the field to read)"
            )
        item_id = _id_of(row, id_field, text, where)
        if item_id in seen:
            raise UserError(f"{where}: {id_field or 'id'}: {item_id!r} already used on line {seen[item_id]}")
        seen[item_id] = number
        reference = row.get(reference_field)
        if isinstance(reference, str) and not reference.strip():
            reference = None
        rows.append(TaskRow(item_id, text, reference, number))
    if not rows:
        raise UserError(f"{path}: the {what} is empty")
    return rows


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
    items: list[EvalItem] = []
    for row in read_task_rows(
        path, id_field=id_field, input_field=input_field, reference_field=reference_field
    ):
        if row.reference is None:
            raise UserError(
                f"{path}:{row.line}: {reference_field}: missing or empty; every eval row needs a reference answer "
                "(the judge and the task metrics compare against it)"
            )
        reference = row.reference
        structured = _as_object(reference)
        if not isinstance(reference, str):
            reference = json.dumps(reference, ensure_ascii=False)
        items.append(
            EvalItem(row.id, row.input, reference, build_instruction(task, row.input), structured, row.line)
        )
    return items[:limit] if limit else items
