"""The evaluate stage: the evaluator on the held-out contracts — base student, distilled student, teacher.

The pipeline fills in what it owns (the eval set, the task description, the teacher and judge endpoints, the
two students, the contract task's fields and how to compare them); the run config's ``evaluate:`` section is
merged on top for everything else (latency load, ROI inputs, generation limits).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from distill.endpoint import Endpoint
from distill.errors import UserError
from distill.pipeline.contract_parts import FIELDS
from distill.pipeline.contract_task import TASK_DESCRIPTION
from distill.pipeline.servers import PLACEHOLDER_ENDPOINT
from distill.pipeline.stages import stage_key

if TYPE_CHECKING:
    from distill.evaluator.config import EvalConfig
    from distill.pipeline.steps import StageContext

# Keys the pipeline decides; an `evaluate:` section that sets them is an error, not a silent override.
_OWNED = {
    ("eval_set",),
    ("output_dir",),
    ("task",),
    ("students",),
    ("teacher", "base_url"),
    ("teacher", "model"),
    ("teacher", "api_key_env"),
    ("judge", "base_url"),
    ("judge", "model"),
    ("judge", "api_key_env"),
}
DISTILLED, ORIGINAL = "distilled", "base"


def _merge(base: dict[str, Any], extra: dict[str, Any], path: tuple = ()) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if (*path, key) in _OWNED:
            raise ValueError(".".join(("evaluate", *path, key)))
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value, (*path, key))
        else:
            merged[key] = value
    return merged


def _defaults(context: StageContext, teacher: Endpoint, judge: Endpoint, adapter: str) -> dict[str, Any]:
    config = context.config
    thinking = config.with_thinking
    return {
        "eval_set": str(context.run_dir / "data" / "eval.jsonl"),
        "output_dir": str(context.run_dir / "eval"),
        "task": TASK_DESCRIPTION,
        "teacher": {
            **teacher.model_dump(exclude_unset=True),
            "template": config.generate.get("template", "zh"),
            "max_tokens": config.generate.get("max_tokens", 1024),
        },
        "judge": judge.model_dump(exclude_unset=True),
        "students": [
            {
                "name": DISTILLED,
                "role": "distilled",
                "model": config.student,
                "adapter": adapter,
                "label": f"{config.student} + LoRA distilled ({'thinking + answer' if thinking else 'answer only'})",
            },
            {
                "name": ORIGINAL,
                "role": "original",
                "model": config.student,
                "label": f"{config.student} (not tuned)",
            },
        ],
        "generation": {"max_new_tokens": 768 if thinking else 320},
        # The task fixes the formats (integer yuan, ISO date), but a correct value written as 500,000 or
        # 2024年3月5日 is still the right value: F1 compares values, format compliance checks the JSON.
        "metrics": {
            "fields": list(FIELDS),
            "field_normalisers": {"金额": ["nfkc", "number"], "签订日期": ["nfkc", "date"]},
        },
    }


def eval_config(context: StageContext, teacher: Endpoint, judge: Endpoint, adapter: str) -> EvalConfig:
    from distill.evaluator.config import EvalConfig

    try:
        data = _merge(_defaults(context, teacher, judge, adapter), context.config.evaluate)
    except ValueError as owned:
        key = str(owned)
        line = context.loaded.lines.get(tuple(key.split(".")), "?")
        raise UserError(
            f"{context.loaded.source}:{line}: {key}: set by `distill run` itself; remove it from this section"
        ) from None
    try:
        return EvalConfig.model_validate(data)
    except ValidationError as exc:
        raise context.loaded.section_error(exc, "evaluate") from None


def validate_section(context: StageContext) -> None:
    eval_config(context, PLACEHOLDER_ENDPOINT, PLACEHOLDER_ENDPOINT, str(context.run_dir / "adapter"))


def key(context: StageContext) -> str:
    config = context.config
    judge = config.judge.model_dump()
    return stage_key(
        "evaluate",
        context.key("data"),
        context.key("train"),
        config.teacher.model_dump(),
        judge,
        config.evaluate,
        config.generate.get("template", "zh"),
        TASK_DESCRIPTION,
    )


def work(context: StageContext) -> tuple[dict, dict]:
    from distill.evaluator.run import run_evaluation

    services = context.services
    teacher, judge = services.teacher(), services.judge()
    config = eval_config(context, teacher, judge, str(context.records["train"].path("adapter")))
    report = run_evaluation(config, say=lambda message: print(f"distill eval: {message}", flush=True))
    out = config.output_dir
    outputs = {"report_json": out / "report.json", "report_md": out / "report.md"}
    details = {"warnings": report.get("warnings", []), "timing": report.get("timing", {}).get("wall_s")}
    return outputs, details
