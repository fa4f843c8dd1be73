"""The evaluate stage: the evaluator on the held-out set — base student, distilled student, teacher.

The pipeline fills in what it owns (the eval set, the task's instruction and metrics, the teacher and judge
endpoints, the two students); the run config's ``evaluate:`` section is merged on top for everything else
(latency load, ROI inputs, generation limits).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from distill.endpoint import Endpoint
from distill.evaluator.config import EvalConfig
from distill.evaluator.run import run_evaluation
from distill.pipeline.context import StageContext
from distill.pipeline.markers import stage_key
from distill.pipeline.sections import chosen, merge
from distill.pipeline.stage_generate import teacher_max_tokens

NAME = "evaluate"
DISTILLED, ORIGINAL = "distilled", "base"


def _pipeline_settings(
    context: StageContext, teacher: Endpoint, judge: Endpoint, adapter: str
) -> dict[str, Any]:
    config = context.config
    thinking = config.with_thinking
    return {
        "eval_set": str(context.records["references"].path("eval")),
        "output_dir": str(context.run_dir / "eval"),
        "task": context.task.instruction,
        "teacher": {
            **teacher.model_dump(exclude_unset=True),
            "template": context.task.template,
            "max_tokens": teacher_max_tokens(config),
        },
        "judge": judge.model_dump(exclude_unset=True),
        "students": [
            {
                "name": DISTILLED,
                "role": "distilled",
                "model": config.student,
                "adapter": adapter,
                "label": f"{config.student} + LoRA distilled ({'thinking + answer' if thinking else 'answer only'})",
                "task": context.task.student_instruction,
            },
            {
                "name": ORIGINAL,
                "role": "original",
                "model": config.student,
                "label": f"{config.student} (not tuned)",
            },
        ],
        "generation": {"max_new_tokens": 768 if thinking else 320},
        "metrics": context.task.metrics_settings(),
        "roi": _data_investment(context),
    }


def _data_investment(context: StageContext) -> dict[str, Any]:
    """The training data's part of the ROI investment: the teacher answers the generate stage bought, and
    their measured spend when the teacher has a price in the ROI's currency."""
    details = context.records["generate"].details
    records = details.get("records", {})
    cost = details.get("cost") or {}
    currency = context.config.evaluate.roi.currency
    measured = cost.get("total") if cost.get("priced") and cost.get("currency") == currency else None
    return {"data_calls": records.get("accepted", 0) + records.get("rejected", 0), "data_cost": measured}


def eval_config(context: StageContext, teacher: Endpoint, judge: Endpoint, adapter: str) -> EvalConfig:
    """The evaluator's config: the run config's ``evaluate:`` section over the pipeline's own choices."""
    data = merge(_pipeline_settings(context, teacher, judge, adapter), chosen(context.config.evaluate))
    try:
        return EvalConfig.model_validate(data)
    except ValidationError as exc:
        raise context.loaded.section_error(exc, "evaluate") from None


def check(context: StageContext) -> None:
    """The ``evaluate:`` section was checked when the config was loaded; the endpoints come when it runs."""


def key(context: StageContext) -> str:
    config = context.config
    return stage_key(
        NAME,
        context.key("references"),
        context.key("train"),
        config.teacher.model_dump(),
        config.judge.model_dump(),
        chosen(config.evaluate),
        teacher_max_tokens(config),
        context.task.instruction,
        context.task.student_instruction,
        context.task.template,
        context.task.metrics_settings(),
    )


def run(context: StageContext) -> tuple[dict[str, Any], dict[str, Any]]:
    services = context.services
    teacher, judge = services.teacher(), services.judge()
    config = eval_config(context, teacher, judge, str(context.records["train"].path("adapter")))
    report = run_evaluation(config, say=lambda message: print(f"distill eval: {message}", flush=True))
    out = config.output_dir
    outputs = {"report_json": out / "report.json", "report_md": out / "report.md"}
    details = {"warnings": report.get("warnings", []), "timing": report.get("timing", {}).get("wall_s")}
    return outputs, details
