"""The run's task as the stages see it: its name, instruction, teacher template, answer schema and metrics.

Built once, before any stage runs, from the ``task:`` section: the instruction file and the answer schema are
read and checked here, so a missing file or a schema that is not valid JSON Schema fails first, naming the
file and line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.errors import UserError
from distill.evaluator.answer_schema import AnswerSchema, check_schema, load_answer_schema
from distill.pipeline.config import LoadedRunConfig, TaskConfig
from distill.pipeline.contract_parts import FIELDS
from distill.pipeline.contract_task import TASK_DESCRIPTION

# The contract task fixes the formats (integer yuan, ISO date), but a correct value written as 500,000 or
# 2024年3月5日 is still the right value: F1 compares values, format compliance checks the JSON.
_CONTRACT_METRICS = {
    "fields": list(FIELDS),
    "field_normalisers": {"金额": ["nfkc", "number"], "签订日期": ["nfkc", "date"]},
}


@dataclass(frozen=True)
class TaskView:
    kind: str
    name: str  # names the training files and the report
    instruction: str  # the task description in the teacher's template and before every student input
    template: str  # the teacher's prompt template: zh, en or a file
    schema: AnswerSchema | None = None
    student_instruction: str | None = (
        None  # what the student is trained and served with, when not instruction
    )

    def metrics_settings(self) -> dict[str, Any]:
        """The evaluator's ``metrics:`` for this task."""
        schema = {"answer_schema": self.schema.schema} if self.schema is not None else {}
        return {**_CONTRACT_METRICS, **schema} if self.kind == "contracts" else schema


def _instruction(task: TaskConfig, loaded: LoadedRunConfig) -> str:
    if task.instruction is not None:
        return task.instruction
    path = Path(task.instruction_file)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(
            f"{loaded.where('task', 'instruction_file')}: task.instruction_file: {path} not found"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: task.instruction_file: cannot read it as UTF-8 text: {exc}") from None
    if not text.strip():
        raise UserError(f"{path}: task.instruction_file: the file is empty")
    return text.strip()


def _schema(task: TaskConfig, loaded: LoadedRunConfig) -> AnswerSchema | None:
    spec = task.answer_schema
    if spec is None:
        return None
    if isinstance(spec, dict):
        # Inline in the run config: its keys are where the run config (or a file it extends) wrote them.
        prefix = ("task", "answer_schema")
        lines = {key[2:]: line for key, line in loaded.lines.items() if key[:2] == prefix}
        schema = check_schema(spec, loaded.source, lines)
        where = loaded.where(*prefix)
    else:
        if not Path(spec).is_file():
            raise UserError(f"{loaded.where('task', 'answer_schema')}: task.answer_schema: {spec} not found")
        schema = load_answer_schema(spec)
        where = str(spec)
    if not schema.fields:
        raise UserError(
            f"{where}: answer_schema: must describe a JSON object with properties (the fields field F1 counts)"
        )
    return schema


def task_view(loaded: LoadedRunConfig) -> TaskView:
    task = loaded.config.task
    if task.kind == "contracts":
        instruction = TASK_DESCRIPTION
    else:
        instruction = _instruction(task, loaded)
    student = task.student_instruction.strip() if task.student_instruction is not None else None
    return TaskView(
        task.kind, task.dataset_name, instruction, task.prompt_template, _schema(task, loaded), student
    )
