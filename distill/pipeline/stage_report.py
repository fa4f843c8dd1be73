"""The run's own report.md: the verdict and the seed's table first, then where the time went, stage by stage,
what the data and training looked like, and in plain words what the teacher and the judge are.

It is rewritten on every `distill run` (it costs nothing), from the stage markers and the evaluator's
report.json, so it always describes the run directory as it stands, including which stages were reused.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from distill.evaluator.report import investment_arithmetic, seed_table
from distill.pipeline.context import StageContext
from distill.pipeline.markers import StageRecord, stage_key
from distill.pipeline.stage_train import summary_for_report

NAME = "report"

REFERENCE_NOTE = (
    "**About the teacher.** No strong instruct model can be had offline, so the teacher here is the *reference "
    "teacher*: a local OpenAI-compatible server whose answers and step-by-step reasoning are derived from the "
    "contract generator's ground truth. It stands in for a strong API model such as GPT-4o (realistic latency, "
    "streaming and token usage), so its F1 of 1.0 is by construction, not a model's achievement. What this run "
    "measures is how much of a perfect teacher's behaviour the student recovers."
)
REFERENCE_JUDGE_NOTE = (
    "**About the judge.** There is no strong judge model offline either. The judge is a *reference-based rubric* "
    "served by the same reference-teacher process: it parses the answer as the task's JSON and scores "
    "10 × (fields that agree with the reference) / 5. It never rewards fluent reasoning with wrong values, and "
    "an answer that is not the required JSON scores 0."
)


def check(context: StageContext) -> None:
    """Nothing to refuse: the report reads the other stages' records."""


def key(context: StageContext) -> str:
    # Always rewritten: it reports this invocation (which stages ran, which were reused) and costs nothing.
    return stage_key(NAME, time.time_ns())


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _num(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _stage_lines(records: dict[str, StageRecord], report_seconds: float) -> list[str]:
    lines = ["| stage | wall time | this invocation |", "|---|---:|---|"]
    total = 0.0
    for name, record in records.items():
        if name == "report":
            continue
        total += record.seconds
        state = "reused (complete for this config)" if record.skipped else "ran"
        lines.append(f"| {name} | {record.seconds:,.1f} s | {state} |")
    lines.append(f"| report | {report_seconds:.1f} s | ran |")
    lines.append(
        f"| **total** | **{total + report_seconds:,.1f} s ({(total + report_seconds) / 60:.1f} min)** | |"
    )
    return lines


def _targets(evaluation: dict[str, Any]) -> list[str]:
    systems = evaluation.get("systems", {})
    teacher = systems.get("teacher", {}).get("task", {})
    distilled = systems.get("distilled", {}).get("task", {})
    base = systems.get("base", {}).get("task", {})
    if not teacher or not distilled:
        return []
    retention = (
        distilled["f1"] / teacher["f1"] if teacher.get("f1") and distilled.get("f1") is not None else None
    )
    compliance = distilled.get("format_compliance")
    ok_retention = retention is not None and retention >= 0.90
    ok_format = compliance is not None and compliance >= 0.95
    return [
        "## Targets",
        "",
        "| target | measured | met |",
        "|---|---|---|",
        f"| distilled F1 ≥ 90% of the teacher's | {_num(distilled.get('f1'))} / {_num(teacher.get('f1'))} = "
        f"{_pct(retention)} (base student: {_num(base.get('f1'))}) | {'yes' if ok_retention else 'no'} |",
        f"| distilled format compliance ≥ 95% | {_pct(compliance)} (base student: "
        f"{_pct(base.get('format_compliance'))}) | {'yes' if ok_format else 'no'} |",
        "",
    ]


def _roi_lines(evaluation: dict[str, Any]) -> list[str]:
    lines = ["## Return on investment", ""]
    for name, comparison in evaluation.get("comparisons", {}).items():
        roi = comparison["roi"]
        reasons = f" ({'; '.join(roi['reasons'])})" if roi["reasons"] else ""
        lines.append(f"- {name}: {investment_arithmetic(roi)}. Verdict: {roi['recommendation']}{reasons}.")
    return [*lines, ""]


def _data_lines(records: dict[str, StageRecord]) -> list[str]:
    lines = ["## Data", ""]
    data = records.get("data")
    generate = records.get("generate")
    export = records.get("export")
    if data:
        lines.append(
            f"- Synthetic contracts: {data.details.get('train_inputs')} distillation inputs and an "
            f"independent held-out set of {data.details.get('eval_contracts')} (another seed; no shared "
            "ids or texts)."
        )
    if generate:
        records_ = generate.details.get("records", {})
        reasons = ", ".join(
            f"{k}: {v}" for k, v in generate.details.get("rejected_by_reason", {}).items() if v
        )
        lines.append(
            f"- Teacher answers: {records_.get('accepted')} accepted, {records_.get('rejected')} rejected "
            f"by the quality filters{f' ({reasons})' if reasons else ''}, {records_.get('failed')} failed "
            "calls. "
            f"Teacher: {generate.details.get('teacher')}."
        )
    if export:
        kind = (
            "thinking + answer (【思考】…【答案】…)" if export.details.get("with_thinking") else "answer only"
        )
        lines.append(f"- Training set: {export.details.get('rows')} rows, {kind}.")
    return [*lines, ""]


def _relative(path: str | os.PathLike, start: Path) -> str:
    return os.path.relpath(path, start)


def render(
    context: StageContext, evaluation: dict[str, Any], training: dict[str, Any], report_seconds: float
) -> str:
    run_dir = context.run_dir
    records = context.records
    lines = ["# distill run report", ""]
    for name, comparison in evaluation.get("comparisons", {}).items():
        label = evaluation["students"][name]["label"]
        lines.append(f"**{name}** ({label}): {comparison['roi']['recommendation']}")
    lines += [
        "",
        f"{evaluation.get('items', 0)} held-out contracts. Teacher: {evaluation.get('teacher')}. "
        f"Judge: {evaluation.get('judge')}.",
        "",
    ]
    if context.config.teacher.kind == "reference":
        lines += [REFERENCE_NOTE, ""]
    if context.config.judge.kind == "reference":
        lines += [REFERENCE_JUDGE_NOTE, ""]
    if evaluation:
        lines += ["## The seed's table", "", *seed_table(evaluation), ""]
        lines += _targets(evaluation)
        lines += _roi_lines(evaluation)
    lines += ["## Wall time by stage (this machine)", "", *_stage_lines(records, report_seconds), ""]
    lines += _data_lines(records)
    if training:
        lines += ["## Training", "", *[f"- {line}" for line in training.get("lines", [])], ""]
        for figure in training.get("figures", []):
            lines.append(f"![{Path(figure).stem}]({_relative(figure, run_dir)})")
        lines.append("")
    figures = evaluation.get("figures", [])
    if figures:
        lines += ["## Plots", ""]
        lines += [f"![{Path(name).stem}]({_relative(run_dir / 'eval' / name, run_dir)})" for name in figures]
        lines.append("")
    lines += [
        "## Details",
        "",
        f"- Full evaluation (ROI arithmetic, latency percentiles, per-field F1): "
        f"[{_relative(run_dir / 'eval' / 'report.md', run_dir)}](eval/report.md)",
        "- Per-item answers: eval/items.jsonl; stage markers: stages/*.json; logs: logs/",
        "",
    ]
    for warning in evaluation.get("warnings", []):
        lines.append(f"> warning: {warning}")
    return "\n".join(lines) + "\n"


def run(context: StageContext) -> tuple[dict[str, Any], dict[str, Any]]:
    started = time.monotonic()
    evaluation = json.loads(context.records["evaluate"].path("report_json").read_text(encoding="utf-8"))
    training = summary_for_report(context.records["train"])
    path = context.run_dir / "report.md"
    text = render(context, evaluation, training, time.monotonic() - started)
    staging = path.with_name(path.name + ".tmp")
    staging.write_text(text, encoding="utf-8")
    os.replace(staging, path)
    return {"report": path}, {}
