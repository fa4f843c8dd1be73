"""``report.json`` (everything), ``items.jsonl`` (per item) and ``report.md`` (for people), with the seed's table.

The markdown leads with the verdict and the seed's table — teacher / distilled / original student by field
F1, format compliance, latency and monthly cost — then the evidence: judge comparison, ROI arithmetic,
latency percentiles, missing scores and failures, and where the evaluator's own time went.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from distill.evaluator.grading import TEACHER
from distill.evaluator.load_metrics import LatencyTargets
from distill.evaluator.plots import goodput_plot, score_plot, serving_curve_plot
from distill.evaluator.serving_bench import headline, report_lines

from distill.files import write_atomically, write_jsonl

_ROLE_ORDER = {"distilled": 0, "original": 1, "other": 2}


def percent(value: float | None) -> str:
    """A share as a percentage with one decimal, or "—" when there is none: how every report writes one."""
    return "—" if value is None else f"{value:.1%}"


def number(value: float | None, digits: int = 2) -> str:
    """A figure with thousands separators and ``digits`` decimals, or "—" when there is none."""
    return "—" if value is None else f"{value:,.{digits}f}"


def _seconds(ms: float | None) -> str:
    return "—" if ms is None else f"{ms / 1000:.2f} s"


def system_order(report: dict[str, Any]) -> list[str]:
    students = sorted(report["students"], key=lambda name: _ROLE_ORDER[report["students"][name]["role"]])
    return ([TEACHER] if TEACHER in report["systems"] else []) + students


def _row(label: str, values: list[str]) -> str:
    return "| " + " | ".join([label, *values]) + " |"


def seed_table(report: dict[str, Any]) -> list[str]:
    order = system_order(report)
    heads = [
        f"{name} ({report['students'][name]['role']})" if name in report["students"] else name
        for name in order
    ]
    systems, latency, comparisons = report["systems"], report["latency"], report["comparisons"]
    lines = [_row("metric", heads), _row("---", ["---"] * len(order))]
    if report["fields"]:
        lines.append(
            _row("field F1 (要素抽取F1)", [number(systems[n].get("task", {}).get("f1")) for n in order])
        )
        compliance = (
            "format compliance: valid JSON satisfying the schema (格式符合率)"
            if report.get("scoring") == "answer schema"
            else "format compliance (格式符合率)"
        )
        lines.append(
            _row(compliance, [percent(systems[n].get("task", {}).get("format_compliance")) for n in order])
        )
    elif report.get("scoring") == "exact match":
        lines.append(
            _row(
                "exact match (完全匹配率)",
                [percent(systems[n].get("task", {}).get("exact_match")) for n in order],
            )
        )
    if any("judge" in systems[n] for n in order):
        lines.append(
            _row("judge score, mean 0–10", [number(systems[n].get("judge", {}).get("avg")) for n in order])
        )
    if latency:
        points = [headline(latency[n]) if latency.get(n) else None for n in order]
        lines.append(
            _row(
                "latency p50, end-to-end, at the knee (推理速度)",
                [_seconds(p["e2el_ms"]["p50"] if p else None) for p in points],
            )
        )
        lines.append(
            _row("time to first token p50", [_seconds(p["ttft_ms"]["p50"] if p else None) for p in points])
        )
        lines.append(
            _row("output tokens/s", [number(p["output_token_throughput"] if p else None, 1) for p in points])
        )
    costs = []
    for name in order:
        if name == TEACHER:
            first = next(iter(comparisons.values()), None)
            costs.append(first["roi"]["teacher_monthly_cost"] if first else None)
        else:
            costs.append(comparisons[name]["roi"]["student_monthly_cost"])
    currency = next(iter(comparisons.values()))["roi"]["currency"] if comparisons else ""
    calls = next(iter(comparisons.values()))["roi"]["calls_per_month"] if comparisons else 0
    lines.append(
        _row(f"monthly cost, {calls:,.0f} calls (月度成本, {currency})", [number(c, 0) for c in costs])
    )
    return lines


def _comparison_lines(name: str, comparison: dict[str, Any]) -> list[str]:
    lines = [f"### {name} vs teacher", ""]
    judge = comparison.get("judge")
    if judge:
        lines.append(
            f"- Judge (win margin {judge['margin']:g}): student wins "
            f"{percent(judge['student_win_rate'])}, ties {percent(judge['tie_rate'])}, teacher wins "
            f"{percent(judge['teacher_win_rate'])} over {judge['paired']} items scored on both sides "
            f"({judge['unpaired']} left out: a score missing on one side)."
        )
        lines.append(
            f"- Mean score: student {number(judge['avg_student'])} vs teacher {number(judge['avg_teacher'])} "
            f"→ quality retention {percent(judge['retention'])}."
        )
    if comparison.get("f1_retention") is not None:
        lines.append(
            f"- Field-F1 retention (student F1 / teacher F1): {percent(comparison['f1_retention'])}."
        )
    pairwise = comparison.get("pairwise")
    if pairwise:
        lines.append(
            f"- Pairwise (both orders asked; disagreement = tie): student wins {pairwise['student_wins']}, "
            f"ties {pairwise['ties']} ({pairwise['order_disagreements']} from disagreeing orders), teacher wins "
            f"{pairwise['teacher_wins']}, missing {pairwise['missing']}."
        )
    roi = comparison["roi"]
    currency = roi["currency"]
    lines += [
        f"- Cost per call: teacher {number(roi['teacher_cost_per_call'], 4)} {currency} ({roi['teacher_cost_source']}), "
        f"student {number(roi['student_cost_per_call'], 6)} {currency} ({roi['student_cost_source']}).",
        f"- Monthly: teacher {number(roi['teacher_monthly_cost'], 0)}, student {number(roi['student_monthly_cost'], 0)}, "
        f"saving {number(roi['monthly_saving'], 0)} {currency}.",
        f"- {investment_arithmetic(roi)}.",
        f"- Verdict ({'recommended' if roi['recommended'] else 'not recommended'}): **{roi['recommendation']}**"
        + (f" — {'; '.join(roi['reasons'])}" if roi["reasons"] else "")
        + f" (retention from {roi['retention_from']}: {percent(roi['retention'])}, needs > {percent(roi['min_retention'])};"
        f" break-even needs < {roi['max_break_even_months']:g} months).",
        "",
    ]
    return lines


def investment_arithmetic(roi: dict[str, Any]) -> str:
    """How break-even was reached: the investment's parts, their sum, and the division by the saving."""
    parts = roi["investment_parts"]
    currency = roi["currency"]
    invested = (
        f"Investment = data {number(parts['data'])} ({parts['data_source']}) + training {number(parts['training'])} "
        f"+ engineering {number(parts['engineering'])} = {number(parts['total'])} {currency}"
    )
    if roi["never_breaks_even"]:
        return f"{invested}; break-even never: the student saves nothing per month"
    if roi["break_even_months"] is None:
        return f"{invested}; break-even unknown"
    return (
        f"{invested}; break-even = {number(parts['total'])} / {number(roi['monthly_saving'])} saved per month = "
        f"{roi['break_even_months']:.3g} months"
    )


def _latency_lines(report: dict[str, Any]) -> list[str]:
    targets = report["config"]["latency"]["targets"]
    return report_lines(report["latency"], system_order(report), LatencyTargets(**targets).describe())


def _detail_lines(report: dict[str, Any]) -> list[str]:
    lines = ["## Missing scores and failures", ""]
    for name in system_order(report):
        system = report["systems"][name]
        missing = system.get("judge", {}).get("missing") or {}
        failed = system.get("call_failures") or {}
        lines.append(
            f"- {name}: {system['answered']}/{system['items']} answered"
            + (f", call failures {failed}" if failed else "")
            + (f", judge scores missing {missing} (counted, never replaced by a default)" if missing else "")
        )
    problems = report["generation"].get("problems")
    if problems:
        lines.append(f"- student generation problems: {problems}")
    if report["fields"]:
        lines += [
            "",
            "Per-field F1:",
            "",
            _row("field", system_order(report)),
            _row("---", ["---"] * len(system_order(report))),
        ]
        for field in report["fields"]:
            values = [
                number(report["systems"][n].get("task", {}).get("per_field_f1", {}).get(field))
                for n in system_order(report)
            ]
            lines.append(_row(field, values))
    timing = report["timing"]
    lines += [
        "",
        "## Where the time went",
        "",
        f"Wall {timing['wall_s']:.1f} s; the evaluator's own work {timing['own_s']:.2f} s "
        f"({percent(timing['own_fraction'])}); main-process CPU {timing['main_process_cpu_s']:.1f} s. "
        f"Student generation: {report['generation']['backend']} {report['generation']['dtype']}, "
        f"{report['generation']['generated']} generated, {report['generation']['cached']} cached.",
        "",
        _row("stage", ["kind", "seconds"]),
        _row("---", ["---", "---"]),
    ]
    lines += [_row(stage["stage"], [stage["kind"], f"{stage['seconds']:.2f}"]) for stage in timing["stages"]]
    return [*lines, ""]


def render_markdown(report: dict[str, Any], figures: list[str]) -> str:
    lines = ["# distill eval report", ""]
    for name, comparison in report["comparisons"].items():
        if TEACHER in report["systems"]:
            lines.append(
                f"**{name}** ({report['students'][name]['label']}): {comparison['roi']['recommendation']}"
            )
    lines += [
        "",
        f"{report['items']} held-out items. Teacher: {report['teacher'] or 'none'}. "
        f"Judge: {report['judge'] or 'none'}"
        + (f" ({report['judge_mode']})" if report["judge"] else "")
        + ".",
        "",
    ]
    lines += [f"> warning: {warning}" for warning in report["warnings"]]
    lines += ["", "## The seed's table", "", *seed_table(report), ""]
    if TEACHER in report["systems"]:
        lines += ["## Quality and ROI", ""]
        for name, comparison in report["comparisons"].items():
            lines += _comparison_lines(name, comparison)
    lines += _latency_lines(report)
    lines += [f"![{Path(figure).stem}]({figure})" for figure in figures] + [""]
    lines += _detail_lines(report)
    return "\n".join(lines)


def write_report(report: dict[str, Any], per_item: list[dict[str, Any]], out: Path, *, plots: bool) -> None:
    """Write report.json, items.jsonl, report.md and (with ``plots``) the PNGs under ``out``."""
    order = system_order(report)
    if plots:
        scores = {
            name: system.get("judge", {}).get("scores", []) for name, system in report["systems"].items()
        }
        curves = [{**report["latency"][name], "role": name} for name in order if report["latency"].get(name)]
        targets = LatencyTargets(**report["config"]["latency"]["targets"]).describe()
        made = [
            serving_curve_plot(curves, out / "latency.png"),
            goodput_plot(curves, targets, out / "goodput.png"),
            score_plot(scores, order, out / "scores.png"),
        ]
        report["figures"] = [path.name for path in made if path is not None]
    write_atomically(out / "report.json", json.dumps(report, ensure_ascii=False, indent=1))
    write_jsonl(out / "items.jsonl", per_item)
    write_atomically(out / "report.md", render_markdown(report, report.get("figures", [])))
