"""The generate stage: the teacher answers every training input through the engine (resumable by itself)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from distill.endpoint import Endpoint
from distill.engine.config import GenerateConfig
from distill.engine.runner import COMPLETE, INTERRUPTED, run_generation
from distill.errors import UserError
from distill.pipeline.config import RunConfig
from distill.pipeline.context import StageContext
from distill.pipeline.markers import claim_output_dir, stage_key
from distill.pipeline.sections import chosen
from distill.pipeline.task import instruction

NAME = "generate"
# A reasoning answer needs room; the engine's own default is for any task.
DEFAULT_MAX_TOKENS = 1024


def teacher_max_tokens(config: RunConfig) -> int:
    """The teacher's answer budget, in generation and when the evaluator asks it again."""
    return chosen(config.generate).get("max_tokens", DEFAULT_MAX_TOKENS)


def generate_config(context: StageContext, teacher: Endpoint) -> GenerateConfig:
    """The engine's config: the run config's ``generate:`` section over the pipeline's own choices."""
    section = chosen(context.config.generate)
    # The teacher: the endpoint the run's teacher: names, with generate.teacher's limits, timeouts and price.
    endpoint = {"concurrency": 32, **teacher.model_dump(exclude_unset=True), **section.pop("teacher", {})}
    data = {
        "max_tokens": DEFAULT_MAX_TOKENS,
        **section,
        "input": str(context.run_dir / "data" / "train.jsonl"),
        "output_dir": str(context.run_dir / "generate"),
        "teacher": endpoint,
        "task": instruction(context.config),
    }
    try:
        return GenerateConfig.model_validate(data)
    except ValidationError as exc:
        raise context.loaded.section_error(exc, "generate") from None


def _teacher_identity(context: StageContext) -> dict[str, Any]:
    teacher = context.config.teacher
    if teacher.kind == "api" and teacher.endpoint is not None:
        return {"kind": "api", "base_url": teacher.endpoint.base_url, "model": teacher.endpoint.model}
    if teacher.kind == "vllm":
        return {"kind": "vllm", "model": teacher.model}
    return {"kind": "reference"}  # its answers depend only on the data, which is in the key already


def check(context: StageContext) -> None:
    """The ``generate:`` section was checked when the config was loaded; the endpoint comes when it runs."""


def key(context: StageContext) -> str:
    # generate.teacher holds limits, timeouts and prices: they change how fast, not what the teacher says.
    section = {k: v for k, v in chosen(context.config.generate).items() if k != "teacher"}
    return stage_key(
        NAME, context.key("data"), _teacher_identity(context), section, instruction(context.config)
    )


def run(context: StageContext) -> tuple[dict[str, Any], dict[str, Any]]:
    teacher = context.services.teacher()
    config = generate_config(context, teacher)
    claim_output_dir(config.output_dir, key(context))
    summary = run_generation(config)
    status = summary.get("status")
    if status == INTERRUPTED:
        raise KeyboardInterrupt
    if status != COMPLETE:
        raise UserError(
            f"generate stopped with status {status!r}: {summary.get('message', '')} "
            f"(see {config.output_dir / 'summary.json'}; `distill run` again resumes it)"
        )
    if summary["records"]["accepted"] == 0:
        raise UserError(
            f"generate: the teacher gave no usable answer (see {config.output_dir / 'summary.json'})"
        )
    details = {
        "teacher": teacher.label or teacher.model,
        "records": summary["records"],
        "rejected_by_reason": summary["rejected_by_reason"],
        "failed_by_class": summary["session"].get("failed_by_class", {}),
        "cost": summary.get("cost"),
    }
    return {"run_dir": config.output_dir, "summary": config.output_dir / "summary.json"}, details
