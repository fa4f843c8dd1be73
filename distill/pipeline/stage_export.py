"""The export stage: the accepted teacher answers as training files, answer only or thinking + answer."""

from __future__ import annotations

from typing import Any

from distill.engine.export import export_dataset
from distill.pipeline.context import StageContext
from distill.pipeline.markers import stage_key
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
    return stage_key(NAME, context.key("generate"), context.config.with_thinking, reviewed)


def run(context: StageContext) -> tuple[dict[str, Any], dict[str, Any]]:
    run_dir = context.records["generate"].path("run_dir")
    if context.config.review == "required":
        require_review(run_dir)  # stops the run here until the review is finished
    result = export_dataset(
        run_dir,
        context.run_dir / "dataset",
        with_thinking=context.config.with_thinking,
        name=context.task.name,
        review=REVIEW_EXPORT_MODE if context.config.review == "required" else None,
    )
    outputs: dict[str, Any] = {f"{fmt}": path for fmt, path in result["files"].items()}
    outputs["dataset_info"] = result["dataset_info"]
    return outputs, {"rows": result["rows"], "with_thinking": result["with_thinking"]}
