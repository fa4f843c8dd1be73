"""The generate stage: the teacher answers every training input through the engine (resumable by itself)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from distill.endpoint import Endpoint
from distill.engine.config import GenerateConfig
from distill.engine.prompts import load_template
from distill.engine.runner import COMPLETE, INTERRUPTED, run_generation
from distill.errors import UserError
from distill.pipeline.config import RunConfig
from distill.pipeline.context import StageContext
from distill.pipeline.markers import claim_output_dir, stage_key
from distill.pipeline.sections import chosen

NAME = "generate"
# A reasoning answer needs room; the engine's own default is for any task.
DEFAULT_MAX_TOKENS = 1024


def teacher_max_tokens(config: RunConfig) -> int:
    """The teacher's answer budget, in generation and when the evaluator asks it again."""
    return chosen(config.generate).get("max_tokens", DEFAULT_MAX_TOKENS)


def generate_config(
    context: StageContext, teacher: Endpoint, *, inputs: Path | None = None, output_dir: Path | None = None
) -> GenerateConfig:
    """The engine's config: the run config's ``generate:`` section over the pipeline's own choices.

    By default for the training inputs; the references stage asks the same teacher the same way about the
    held-out inputs.
    """
    section = chosen(context.config.generate)
    # The teacher: the endpoint the run's teacher: names, with generate.teacher's limits, timeouts and price.
    endpoint = {"concurrency": 32, **teacher.model_dump(exclude_unset=True), **section.pop("teacher", {})}
    data = {
        "max_tokens": DEFAULT_MAX_TOKENS,
        **section,
        "input": str(inputs or context.run_dir / "data" / "train.jsonl"),
        "output_dir": str(output_dir or context.run_dir / "generate"),
        "teacher": endpoint,
        "task": context.task.instruction,
        "template": context.task.template,
        # With a schema, an answer that is not JSON satisfying it is rejected (reason: schema), never trained on.
        "answer_schema": context.task.schema.schema if context.task.schema is not None else None,
    }
    try:
        return GenerateConfig.model_validate(data)
    except ValidationError as exc:
        raise context.loaded.section_error(exc, "generate") from None


def teacher_settings(context: StageContext) -> tuple[Any, ...]:
    """What decides the teacher's answers, for the keys of the stages that ask it."""
    teacher = context.config.teacher
    if teacher.kind == "api" and teacher.endpoint is not None:
        identity = {"kind": "api", "base_url": teacher.endpoint.base_url, "model": teacher.endpoint.model}
    elif teacher.kind == "vllm":
        identity = {"kind": "vllm", "model": teacher.model}
    else:
        identity = {"kind": "reference"}  # its answers depend only on the data, which is in the keys already
    # generate.teacher holds limits, timeouts and prices: they change how fast, not what the teacher says.
    section = {k: v for k, v in chosen(context.config.generate).items() if k != "teacher"}
    schema = context.task.schema.schema if context.task.schema is not None else None
    return identity, section, context.task.instruction, context.task.template, schema


def check(context: StageContext) -> None:
    """The teacher's template exists and has an {input}; the section itself was checked at load."""
    load_template(context.task.template)


def key(context: StageContext) -> str:
    return stage_key(NAME, context.key("data"), *teacher_settings(context))


def run_engine(config: GenerateConfig, stage: str, stage_key_: str) -> dict[str, Any]:
    """One engine run into ``config.output_dir`` (kept for resuming only under the same key): its summary."""
    claim_output_dir(config.output_dir, stage_key_)
    summary = run_generation(config)
    status = summary.get("status")
    if status == INTERRUPTED:
        raise KeyboardInterrupt
    if status != COMPLETE:
        raise UserError(
            f"{stage} stopped with status {status!r}: {summary.get('message', '')} "
            f"(see {config.output_dir / 'summary.json'}; `distill run` again resumes it)"
        )
    if summary["records"]["accepted"] == 0:
        raise UserError(
            f"{stage}: the teacher gave no usable answer (see {config.output_dir / 'summary.json'})"
        )
    return summary


def run(context: StageContext) -> tuple[dict[str, Any], dict[str, Any]]:
    teacher = context.services.teacher()
    config = generate_config(context, teacher)
    summary = run_engine(config, NAME, key(context))
    details = {
        "teacher": teacher.name,
        "records": summary["records"],
        "rejected_by_reason": summary["rejected_by_reason"],
        "failed_by_class": summary["session"].get("failed_by_class", {}),
        "cost": summary.get("cost"),
    }
    return {"run_dir": config.output_dir, "summary": config.output_dir / "summary.json"}, details
