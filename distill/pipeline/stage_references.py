"""The references stage: the held-out set the evaluator grades against, with a reference for every item.

When the task gives references (the bundled contracts, the user's eval set or their inputs' reference field)
this stage only passes the data stage's ``eval.jsonl`` on. When it does not, the teacher's answers become the
references: the engine asks the same teacher the same way about the held-out inputs (they are never trained
on), and each accepted final answer is an item's reference. With an answer schema, an answer that does not
satisfy it is no reference: the item is left out, and counted. The report says which it was.
"""

from __future__ import annotations

from typing import Any

from distill.engine.records import iter_records
from distill.errors import UserError
from distill.files import read_jsonl, write_jsonl
from distill.pipeline.context import StageContext
from distill.pipeline.markers import stage_key
from distill.pipeline.stage_generate import generate_config, run_engine, teacher_settings
from distill.pipeline.task_data import FROM_TEACHER

NAME = "references"


def _from_teacher(context: StageContext) -> bool:
    return context.records["data"].details.get("references") == FROM_TEACHER


def check(context: StageContext) -> None:
    """Nothing to refuse: the data stage checked the held-out set."""


def key(context: StageContext) -> str:
    if not _from_teacher(context):
        return stage_key(NAME, context.key("data"))
    return stage_key(NAME, context.key("data"), *teacher_settings(context))


def _reference(text: str, context: StageContext) -> Any | None:
    """A teacher's final answer as a reference: JSON that satisfies the schema when there is one."""
    schema = context.task.schema
    if schema is None:
        return text
    value, parsed = schema.parse_strict(text)
    return value if parsed and schema.problem(value) is None else None


def run(context: StageContext) -> tuple[dict[str, Any], dict[str, Any]]:
    data = context.records["data"]
    if not _from_teacher(context):
        return {"eval": data.path("eval")}, {"source": data.details.get("references"), "items": None}
    teacher = context.services.teacher()
    out = context.run_dir / "references"
    config = generate_config(context, teacher, inputs=data.path("eval_inputs"), output_dir=out / "generate")
    config = config.model_copy(update={"samples_per_input": 1})
    summary = run_engine(config, NAME, key(context))
    inputs = dict(read_jsonl(data.path("eval_inputs"), lambda row: (row["id"], row["input"]), "an input row"))
    references: dict[str, Any] = {}
    unusable = 0
    for record in iter_records(config.output_dir, kinds=("accepted",)):
        reference = _reference(record.output, context)
        if reference is None:
            unusable += 1
        elif record.id in inputs:
            references.setdefault(record.id, reference)
    if not references:
        raise UserError(
            f"{NAME}: none of the teacher's {len(inputs)} answers to the held-out inputs is usable as a reference "
            f"(see {config.output_dir / 'summary.json'})"
        )
    path = write_jsonl(
        out / "eval.jsonl",
        (
            {"id": row_id, "input": text, "reference": references[row_id]}
            for row_id, text in inputs.items()
            if row_id in references
        ),
    )
    details = {
        "source": FROM_TEACHER,
        "items": len(references),
        "held_out": len(inputs),
        "left_out": len(inputs) - len(references),
        "not_satisfying_the_schema": unusable,
        "records": summary["records"],
    }
    return {"eval": path, "run_dir": config.output_dir}, details
