"""The data stage: the task's training inputs, its held-out set and the answers the reference teacher knows.

Writes ``data/train.jsonl`` (id, input) and ``data/eval.jsonl`` (id, input, reference) — or, when the
references are to be the teacher's answers, ``data/eval-inputs.jsonl`` — plus what the reference teacher may
know: ``truth.jsonl`` (the bundled contracts) or ``answers.jsonl`` (the user's known answers).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distill.errors import UserError
from distill.pipeline.config import TaskConfig
from distill.pipeline.context import StageContext
from distill.pipeline.contracts import make_contract_sets
from distill.pipeline.markers import stage_key
from distill.pipeline.task_data import fingerprint, load_task_data, write_task_data

NAME = "data"


def _files(task: TaskConfig) -> dict[str, Path]:
    """The user's files this run reads, by the key that names them."""
    named: dict[str, Any] = {}
    if task.kind == "file":
        named = {"inputs": task.inputs, "eval_set": task.eval_set, "instruction_file": task.instruction_file}
    if task.answer_schema is not None and not isinstance(task.answer_schema, dict):
        named["answer_schema"] = task.answer_schema
    return {key: Path(path) for key, path in named.items() if path is not None}


def check(context: StageContext) -> None:
    """Read and check the task's files, and that the reference teacher could answer every training input."""
    task = context.config.task
    if task.kind != "file":
        return
    data = load_task_data(task, context.task.schema)
    if context.config.teacher.kind == "reference":
        unknown = next((row for row in data.train if row.reference is None), None)
        if unknown is not None:
            raise UserError(
                f"{task.inputs}:{unknown.line}: {task.reference_field}: missing; teacher kind reference answers "
                "only inputs whose answer it is given (use teacher kind api or vllm for inputs without one)"
            )


def key(context: StageContext) -> str:
    task = context.config.task
    files = {name: fingerprint(path) for name, path in _files(task).items()}
    return stage_key(NAME, task.model_dump(mode="json"), files)


def run(context: StageContext) -> tuple[dict[str, Any], dict[str, Any]]:
    task = context.config.task
    out = context.run_dir / "data"
    if task.kind == "contracts":
        sets = make_contract_sets(
            out,
            train_count=task.train,
            eval_count=task.eval,
            train_seed=task.train_seed,
            eval_seed=task.eval_seed,
            english_share=task.english_share,
        )
        outputs = {"train": sets.train_path, "eval": sets.eval_path, "truth": sets.truth_path}
        details = {"train_inputs": sets.train_count, "eval_items": sets.eval_count, "references": "generator"}
        return outputs, details
    data = load_task_data(task, context.task.schema)
    outputs = write_task_data(data, out)
    details = {
        "train_inputs": len(data.train),
        "eval_items": len(data.eval),
        "held_out": f"eval_split {task.eval_split:g} by a hash of the id" if task.eval_split else "eval_set",
        "references": data.references,
        "files": {
            name: {"path": str(path), "sha256": fingerprint(path)} for name, path in _files(task).items()
        },
    }
    return outputs, details
