"""The export stage: the accepted teacher answers as training files, answer only or thinking + answer.

With ``task.student_instruction`` the files carry that shorter instruction in place of the task's: the student
is trained (and later served) with it, while the teacher was asked with the task's full description.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from distill.engine.export import export_dataset
from distill.engine.prompts import build_instruction
from distill.errors import UserError
from distill.files import replacing
from distill.pipeline.context import StageContext
from distill.pipeline.markers import stage_key
from distill.review.decisions import ReviewFilter
from distill.review.gate import EXPORT_MODE as REVIEW_EXPORT_MODE
from distill.review.gate import require_review, review_key

NAME = "export"


def check(context: StageContext) -> None:
    """Nothing to refuse: export reads only what generate wrote."""


def key(context: StageContext) -> str:
    # With review: required, what people decided is an input of the dataset like the generated records.
    reviewed = (
        review_key(context.records["generate"].path("run_dir"))
        if context.config.review == "required"
        else None
    )
    return stage_key(
        NAME,
        context.key("generate"),
        context.config.with_thinking,
        reviewed,
        context.task.student_instruction,
    )


def run(context: StageContext) -> tuple[dict[str, Any], dict[str, Any]]:
    run_dir = context.records["generate"].path("run_dir")
    if context.config.review == "required":
        require_review(run_dir)  # stops the run here until the review is finished
    result = export_dataset(
        run_dir,
        context.run_dir / "dataset",
        with_thinking=context.config.with_thinking,
        name=context.task.name,
        review=ReviewFilter(run_dir, REVIEW_EXPORT_MODE) if context.config.review == "required" else None,
    )
    if context.task.student_instruction is not None:
        for path in result["files"].values():
            restate_instructions(Path(path), context.task.instruction, context.task.student_instruction)
    outputs: dict[str, Any] = {f"{fmt}": path for fmt, path in result["files"].items()}
    outputs["dataset_info"] = result["dataset_info"]
    return outputs, {"rows": result["rows"], "with_thinking": result["with_thinking"]}


def restate_instructions(path: Path, task: str, student_instruction: str) -> None:
    """Rewrite an exported alpaca or sharegpt file's instructions, built from ``task``, with the student's."""
    prefix = build_instruction(task, "")

    def restate(instruction: str) -> str:
        if not instruction.startswith(prefix):
            raise UserError(
                f"{path}: an instruction does not start with the task description it was built from"
            )
        return build_instruction(student_instruction, instruction[len(prefix) :])

    with open(path, "rb") as source, replacing(path) as target:
        for line in source:
            row = orjson.loads(line)
            if "instruction" in row:
                row["instruction"] = restate(row["instruction"])
            else:
                first = row["conversations"][0]
                first["value"] = restate(first["value"])
            target.write(orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE))
