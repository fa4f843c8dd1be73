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

from distill.evaluator.report import investment_arithmetic, number, percent, seed_table
from distill.files import write_atomically
from distill.pipeline.context import StageContext
from distill.pipeline.markers import StageRecord, stage_key
from distill.pipeline.stage_train import summary_for_report

NAME = "report"

REFERENCE_NOTE = (
    "**About the teacher.** No strong instruct model can be had offline, so the teacher here is the *reference "
    "teacher*: a local OpenAI-compatible server whose answers are the task's known answers ({known}). It stands "
    "in for a strong API model such as GPT-4o (realistic latency, streaming and token usage), so its scores are "
    "right by construction, not a model's achievement. What this run measures is how much of a perfect "
    "teacher's behaviour the student recovers."
)
REFERENCE_JUDGE_NOTE = (
    "**About the judge.** There is no strong judge model offline either. The judge is a *reference-based rubric* "
    "served by the same reference-teacher process: a JSON answer scores 10 × (fields that agree with the "
    "reference) / (fields of the reference), and 0 when it is not JSON; a text answer scores 10 × the F1 of its "
    "words against the reference's. It never rewards fluent reasoning with wrong values."
)
# Where the held-out set's references came from, in the report's words.
REFERENCE_SOURCES = {
    "generator": "the contract generator's ground truth, for contracts drawn from an independent seed",
    "inputs": "the `{field}` field of the held-out rows of the inputs file",
    "eval_set": "the `{field}` field of the eval set file",
    "teacher": (
        "**the teacher's own answers** (the task gives none): the teacher's row measures how consistently it "
        "answers, not how right it is"
    ),
}


def check(context: StageContext) -> None:
    """Nothing to refuse: the report reads the other stages' records."""


def key(context: StageContext) -> str:
    # Always rewritten: it reports this invocation (which stages ran, which were reused) and costs nothing.
    return stage_key(NAME, time.time_ns())


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


def _target_row(name: str, measured: str, ok: bool) -> str:
    return f"| {name} | {measured} | {'yes' if ok else 'no'} |"


def _targets(evaluation: dict[str, Any]) -> list[str]:
    systems = evaluation.get("systems", {})
    teacher = systems.get("teacher", {})
    distilled = systems.get("distilled", {})
    base = systems.get("base", {})
    if not teacher or not distilled:
        return []
    rows = []
    if evaluation.get("fields"):
        t, d, b = teacher.get("task", {}), distilled.get("task", {}), base.get("task", {})
        retention = d["f1"] / t["f1"] if t.get("f1") and d.get("f1") is not None else None
        compliance = d.get("format_compliance")
        rows.append(
            _target_row(
                "distilled field F1 ≥ 90% of the teacher's",
                f"{number(d.get('f1'))} / {number(t.get('f1'))} = {percent(retention)} (base student: {number(b.get('f1'))})",
                retention is not None and retention >= 0.90,
            )
        )
        rows.append(
            _target_row(
                "distilled format compliance ≥ 95%",
                f"{percent(compliance)} (base student: {percent(b.get('format_compliance'))})",
                compliance is not None and compliance >= 0.95,
            )
        )
    judge = (evaluation.get("comparisons", {}).get("distilled") or {}).get("judge")
    if judge and not evaluation.get("fields"):
        retention = judge.get("retention")
        rows.append(
            _target_row(
                "distilled judge score ≥ 90% of the teacher's",
                f"{number(judge.get('avg_student'))} / {number(judge.get('avg_teacher'))} = {percent(retention)}",
                retention is not None and retention >= 0.90,
            )
        )
    if not rows:
        return []
    return ["## Targets", "", "| target | measured | met |", "|---|---|---|", *rows, ""]


def _roi_lines(evaluation: dict[str, Any]) -> list[str]:
    lines = ["## Return on investment", ""]
    for name, comparison in evaluation.get("comparisons", {}).items():
        roi = comparison["roi"]
        reasons = f" ({'; '.join(roi['reasons'])})" if roi["reasons"] else ""
        lines.append(f"- {name}: {investment_arithmetic(roi)}. Verdict: {roi['recommendation']}{reasons}.")
    return [*lines, ""]


def _task_lines(context: StageContext, records: dict[str, StageRecord]) -> list[str]:
    task = context.task
    data = records.get("data")
    references = records.get("references")
    lines = ["## Task and data", ""]
    if task.kind == "contracts":
        lines.append("- Task: the bundled contract extraction (synthetic contracts with known answers).")
    else:
        scoring = (
            "a structured answer checked against its answer schema" if task.schema else "a free-text answer"
        )
        lines.append(f"- Task: **{task.name}**, {scoring}. Instruction: “{_shorten(task.instruction)}”")
    if task.student_instruction is not None:
        lines.append(
            f"- The distilled student is trained and asked with its own instruction: “{_shorten(task.student_instruction)}”"
            " (the teacher, the judge and the base student get the task's)."
        )
    if data:
        details = data.details
        for name, file in details.get("files", {}).items():
            lines.append(f"- `{name}`: {file['path']} (sha256 {file['sha256']})")
        lines.append(
            f"- {details.get('train_inputs')} training inputs; held-out set: {details.get('eval_items')} items"
            + (f" ({details['held_out']}; never trained on)" if details.get("held_out") else "")
            + "."
        )
        source = details.get("references", "")
        field = getattr(context.config.task, "reference_field", "reference")
        sentence = REFERENCE_SOURCES.get(source, source).format(field=field)
        kept = references.details if references else {}
        if source == "teacher" and kept.get("items") is not None:
            sentence += f"; {kept['items']} of {kept['held_out']} held-out inputs got a usable answer" + (
                f" ({kept['left_out']} left out)" if kept.get("left_out") else ""
            )
        lines.append(f"- References of the held-out set: {sentence}.")
    return [*lines, ""]


def _shorten(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _data_lines(records: dict[str, StageRecord]) -> list[str]:
    lines = []
    generate = records.get("generate")
    export = records.get("export")
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
    lines = [f"# distill run report: {context.task.name}", ""]
    for name, comparison in evaluation.get("comparisons", {}).items():
        label = evaluation["students"][name]["label"]
        lines.append(f"**{name}** ({label}): {comparison['roi']['recommendation']}")
    lines += [
        "",
        f"{evaluation.get('items', 0)} held-out items. Teacher: {evaluation.get('teacher')}. "
        f"Judge: {evaluation.get('judge')}.",
        "",
    ]
    if context.config.teacher.kind == "reference":
        known = (
            "the contract generator's ground truth"
            if context.task.kind == "contracts"
            else "the task's files"
        )
        lines += [REFERENCE_NOTE.format(known=known), ""]
    if context.config.judge.kind == "reference":
        lines += [REFERENCE_JUDGE_NOTE, ""]
    if evaluation:
        lines += ["## The seed's table", "", *seed_table(evaluation), ""]
        lines += _targets(evaluation)
        lines += _roi_lines(evaluation)
    lines += _task_lines(context, records)[:-1]
    lines += _data_lines(records)
    lines += ["## Wall time by stage (this machine)", "", *_stage_lines(records, report_seconds), ""]
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
    scored_by = "exact match" if evaluation.get("scoring") == "exact match" else "per-field F1"
    lines += [
        "## Details",
        "",
        f"- Full evaluation (ROI arithmetic, latency percentiles, {scored_by}): "
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
    text = render(context, evaluation, training, time.monotonic() - started)
    return {"report": write_atomically(context.run_dir / "report.md", text)}, {}
