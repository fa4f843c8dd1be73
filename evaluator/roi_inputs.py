"""What goes into one student's ROI verdict: its scores against the teacher's, retention, and cost per call.

Cost per call, each side: a cost per call written in the config wins; otherwise the teacher's comes from its
per-million-token price × the mean tokens its answers used, and the student's from ``roi.student_price`` the
same way, or from ``roi.student_cost_per_hour`` spread over the requests/s measured in the latency test;
otherwise the seed's own assumptions (¥0.02 and ¥0.001) apply. The report says which source each figure has.

Investment: what the training data cost (measured spend, or the teacher answers bought × the teacher's cost
per call), plus the configured training and engineering costs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from distill.engine.types import CallFailure
from distill.evaluator.calls import Answer
from distill.evaluator.config import EvalConfig
from distill.evaluator.evalset import EvalItem
from distill.evaluator.grading import TEACHER, read_pairwise
from distill.evaluator.roi import (
    compare_scores,
    cost_per_call_from_hourly,
    cost_per_call_from_price,
    ratio,
    verdict,
)
from distill.evaluator.serving_bench import headline, headline_label


def _from_tokens(price, tokens: dict[str, float | None]) -> float | None:
    if tokens.get("prompt_mean") is None or tokens.get("completion_mean") is None:
        return None
    return cost_per_call_from_price(
        price.input_per_million, price.output_per_million, tokens["prompt_mean"], tokens["completion_mean"]
    )


def teacher_cost(config: EvalConfig, systems: dict[str, Any]) -> tuple[float | None, str]:
    roi = config.roi
    price = config.teacher.price if config.teacher else None
    given = roi.teacher_cost_per_call
    if given is not None and ("teacher_cost_per_call" in roi.model_fields_set or price is None):
        return given, "roi.teacher_cost_per_call"
    if price is not None and TEACHER in systems:
        return _from_tokens(price, systems[TEACHER]["tokens"]), "teacher.price × measured tokens per call"
    return None, "unknown: set roi.teacher_cost_per_call or teacher.price"


def student_cost(
    config: EvalConfig, name: str, systems: dict[str, Any], latency: dict
) -> tuple[float | None, str]:
    roi = config.roi
    given = roi.student_cost_per_call
    if given is not None and "student_cost_per_call" in roi.model_fields_set:
        return given, "roi.student_cost_per_call"
    if roi.student_price is not None:
        return _from_tokens(
            roi.student_price, systems[name]["tokens"]
        ), "roi.student_price × measured tokens per call"
    if roi.student_cost_per_hour is not None:
        measured = latency.get(name)
        point = headline(measured) if measured else None
        return (
            cost_per_call_from_hourly(roi.student_cost_per_hour, point and point["request_throughput"]),
            f"roi.student_cost_per_hour / measured req/s {headline_label(measured) if measured else '(not measured)'}",
        )
    if given is not None:
        return given, "roi.student_cost_per_call (the seed's default)"
    return None, "unknown: set roi.student_cost_per_call, student_price or student_cost_per_hour"


def investment(config: EvalConfig, teacher_cost_per_call: float | None) -> dict[str, Any]:
    """The investment break-even pays back, in parts, with where the data part comes from."""
    roi = config.roi
    if roi.data_cost is not None:
        data, source = roi.data_cost, f"measured spend of {roi.data_calls} teacher answers"
    elif roi.data_calls == 0:
        data, source = 0.0, "no teacher answers counted (roi.data_calls)"
    elif teacher_cost_per_call is not None:
        data = roi.data_calls * teacher_cost_per_call
        source = f"{roi.data_calls} teacher answers × {teacher_cost_per_call:.4g} per call"
    else:
        data, source = None, "unknown: the teacher's cost per call is unknown"
    parts = (data, roi.training_cost, roi.engineering_cost)
    return {
        "data": data,
        "data_source": source,
        "training": roi.training_cost,
        "engineering": roi.engineering_cost,
        "total": None if data is None else sum(parts),
    }


def roi_for_student(
    config: EvalConfig,
    name: str,
    systems: dict[str, Any],
    latency: dict[str, Any],
    replies: dict[str, Answer | CallFailure],
    items: Sequence[EvalItem],
) -> dict[str, Any]:
    """The seed's comparison of one student with the teacher, and its ROI verdict."""
    roi = config.roi
    result: dict[str, Any] = {}
    teacher = systems.get(TEACHER)
    student = systems[name]
    if teacher and "judge" in teacher and "judge" in student:
        result["judge"] = compare_scores(
            teacher["judge"]["scores"], student["judge"]["scores"], roi.win_margin
        )
    if teacher and config.judge is not None and config.judge.mode in ("pairwise", "both"):
        result["pairwise"] = read_pairwise(name, items, replies)
    if teacher and "f1" in teacher.get("task", {}) and "f1" in student.get("task", {}):
        result["f1_retention"] = ratio(student["task"]["f1"], teacher["task"]["f1"])
    retention_source = roi.retention_from
    retention = (result.get("judge") or {}).get("retention") if retention_source == "judge" else None
    if retention_source == "f1" or (retention is None and "judge" not in result):
        retention, retention_source = result.get("f1_retention"), "f1"
    teacher_cpc, teacher_source = teacher_cost(config, systems)
    student_cpc, student_source = student_cost(config, name, systems, latency)
    invested = investment(config, teacher_cpc)
    result["roi"] = {
        **verdict(
            calls_per_month=roi.calls_per_month,
            teacher_cost_per_call=teacher_cpc,
            student_cost_per_call=student_cpc,
            investment=invested["total"],
            retention=retention,
            min_retention=roi.min_retention,
            max_break_even_months=roi.max_break_even_months,
        ),
        "currency": roi.currency,
        "retention_from": retention_source,
        "teacher_cost_source": teacher_source,
        "student_cost_source": student_source,
        "investment_parts": invested,
    }
    return result
