"""The user's task data: the inputs file, the held-out set, and the references, checked before anything runs.

The held-out set is a file of its own, or ``eval_split`` of the inputs chosen by a stable hash of each id (the
same rows on every rerun and every machine, never trained on). Its references are the rows' own reference
field; when no held-out row has one, the teacher's answers become the references (the references stage), and
the report says so. Everything that could go wrong with the files is an error naming the file and line: a
missing file, a row without the configured fields, a held-out row that shares an id or a text with the
training inputs, a reference that does not satisfy the answer schema.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.errors import UserError
from distill.evaluator.answer_schema import AnswerSchema
from distill.evaluator.evalset import TaskRow, read_task_rows
from distill.files import write_jsonl
from distill.pipeline.config import TaskConfig

# Where the held-out set's references come from.
FROM_INPUTS, FROM_EVAL_SET, FROM_TEACHER = "inputs", "eval_set", "teacher"


@dataclass(frozen=True)
class TaskData:
    train: list[TaskRow]
    eval: list[TaskRow]
    references: str  # FROM_INPUTS, FROM_EVAL_SET or FROM_TEACHER


def in_eval_split(row_id: str, share: float) -> bool:
    """Whether ``row_id`` is held out: the first 8 bytes of its SHA-256 as a fraction below ``share``."""
    digest = hashlib.sha256(row_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def fingerprint(path: str | Path) -> str:
    """The file's SHA-256 (first 16 hex digits): names exactly which data a run used."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def _same_text(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def _independent(train: list[TaskRow], train_file: Path, held_out: list[TaskRow], eval_file: Path) -> None:
    ids = {row.id: row.line for row in train}
    texts = {_same_text(row.input): row.line for row in train}
    for row in held_out:
        if row.id in ids:
            raise UserError(
                f"{eval_file}:{row.line}: id: {row.id!r} is also a training input ({train_file}:{ids[row.id]}); "
                "the held-out set must share no ids or texts with the inputs"
            )
        line = texts.get(_same_text(row.input))
        if line is not None:
            raise UserError(
                f"{eval_file}:{row.line}: input: the same text is a training input ({train_file}:{line}); "
                "the held-out set must share no ids or texts with the inputs"
            )


def reference_value(reference: Any) -> Any:
    """A reference as the schema sees it: JSON text is parsed, anything else is taken as it is."""
    if isinstance(reference, str) and reference.lstrip()[:1] in ("{", "["):
        try:
            return json.loads(reference)
        except json.JSONDecodeError:
            return reference
    return reference


def _check_references(rows: Iterable[TaskRow], path: Path, field: str, schema: AnswerSchema) -> None:
    for row in rows:
        if row.reference is None:
            continue
        problem = schema.problem(reference_value(row.reference))
        if problem is not None:
            raise UserError(f"{path}:{row.line}: {field}: does not satisfy the answer schema: {problem}")


def _references_of(rows: list[TaskRow], path: Path, field: str) -> bool:
    """True when every held-out row has a reference, False when none has; a mix is an error."""
    missing = [row for row in rows if row.reference is None]
    if not missing:
        return True
    if len(missing) == len(rows):
        return False
    raise UserError(
        f"{path}:{missing[0].line}: {field}: missing, while other held-out rows have one; give every held-out "
        "row a reference, or none (then the teacher's answers are the references)"
    )


def load_task_data(task: TaskConfig, schema: AnswerSchema | None) -> TaskData:
    """Read and check the task's files; the held-out set and where its references come from."""
    fields = {
        "id_field": task.id_field,
        "input_field": task.input_field,
        "reference_field": task.reference_field,
    }
    inputs = Path(task.inputs)
    rows = read_task_rows(inputs, **fields, what="inputs file")
    if schema is not None:
        _check_references(rows, inputs, task.reference_field, schema)
    if task.eval_set is not None:
        eval_file = Path(task.eval_set)
        held_out = read_task_rows(eval_file, **fields, what="eval set")
        _independent(rows, inputs, held_out, eval_file)
        if schema is not None:
            _check_references(held_out, eval_file, task.reference_field, schema)
        train = rows
        given = _references_of(held_out, eval_file, task.reference_field)
        source = FROM_EVAL_SET if given else FROM_TEACHER
    else:
        share = float(task.eval_split or 0)
        held_out = [row for row in rows if in_eval_split(row.id, share)]
        train = [row for row in rows if not in_eval_split(row.id, share)]
        if not held_out or not train:
            raise UserError(
                f"{inputs}: eval_split {share:g} of {len(rows)} inputs leaves "
                f"{'no held-out row' if not held_out else 'nothing to train on'}: change eval_split or give eval_set"
            )
        _independent(train, inputs, held_out, inputs)  # a text given twice, once on each side
        given = _references_of(held_out, inputs, task.reference_field)
        source = FROM_INPUTS if given else FROM_TEACHER
    return TaskData(train, held_out, source)


def write_task_data(data: TaskData, out_dir: Path) -> dict[str, Path]:
    """``train.jsonl``, ``eval.jsonl`` (or ``eval-inputs.jsonl`` when the teacher is to give the references)
    and ``answers.jsonl``: every known answer, for the reference teacher."""
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs = {
        "train": write_jsonl(out_dir / "train.jsonl", ({"id": r.id, "input": r.input} for r in data.train))
    }
    if data.references == FROM_TEACHER:
        rows = ({"id": r.id, "input": r.input} for r in data.eval)
        outputs["eval_inputs"] = write_jsonl(out_dir / "eval-inputs.jsonl", rows)
    else:
        rows = ({"id": r.id, "input": r.input, "reference": r.reference} for r in data.eval)
        outputs["eval"] = write_jsonl(out_dir / "eval.jsonl", rows)
    known = [row for row in (*data.train, *data.eval) if row.reference is not None]
    outputs["answers"] = write_jsonl(
        out_dir / "answers.jsonl", ({"input": r.input, "answer": r.reference} for r in known)
    )
    return outputs
