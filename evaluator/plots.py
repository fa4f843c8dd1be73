"""The report's PNG figures: latency and goodput curves under load, and judge-score histograms, per system.

matplotlib is imported here only (with the Agg backend: no display), so the rest of the evaluator and its
tests never pay for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def score_plot(scores: dict[str, Sequence[float | None]], order: Sequence[str], path: Path) -> Path | None:
    """Histograms of the judge's 0–10 scores per system, side by side (missing scores left out)."""
    systems = [name for name in order if any(score is not None for score in scores.get(name, ()))]
    if not systems:
        return None
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(8, 4))
    bins = [edge - 0.5 for edge in range(12)]
    axis.hist([[s for s in scores[name] if s is not None] for name in systems], bins=bins, label=systems)
    axis.set_xticks(range(11))
    axis.set_xlabel("judge score (0–10)")
    axis.set_ylabel("items")
    axis.legend()
    axis.set_title("judge scores")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


_SIDE_COLOURS = {"student": "tab:blue", "teacher": "tab:orange"}


def serving_curve_plot(results: Sequence[dict[str, Any]], path: Path) -> Path | None:
    """TTFT, TPOT and end-to-end latency (p50 solid, p99 dashed) against request throughput, every side on the
    same axes: where a curve turns upward is where that side stops keeping up with the load."""
    measured = [result for result in results if result["points"]]
    if not measured:
        return None
    plt = _pyplot()
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for axis, metric, title in (
        (axes[0], "ttft_ms", "time to first token"),
        (axes[1], "tpot_ms", "time per output token"),
        (axes[2], "e2el_ms", "end-to-end latency"),
    ):
        for result in measured:
            colour = _SIDE_COLOURS.get(result["role"])
            points = [p for p in result["points"] if p["request_throughput"] and p[metric]["p50"] is not None]
            x = [p["request_throughput"] for p in points]
            for quantile, style in (("p50", "-"), ("p99", "--")):
                axis.plot(
                    x,
                    [p[metric][quantile] for p in points],
                    style,
                    marker="o",
                    color=colour,
                    label=f"{result['role']} {quantile}",
                )
            if result["knee"] is not None:
                best = result["points"][result["knee"]]
                if best["request_throughput"] and best[metric]["p50"] is not None:
                    axis.plot(
                        [best["request_throughput"]], [best[metric]["p50"]], "*", markersize=16, color=colour
                    )
        axis.set_yscale("log")
        axis.set_xlabel("request throughput (req/s)")
        axis.set_ylabel("ms")
        axis.set_title(title)
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.suptitle("latency vs throughput (★ = knee: highest load meeting the targets)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def goodput_plot(results: Sequence[dict[str, Any]], targets: str, path: Path) -> Path | None:
    """Goodput (requests/s meeting every target, solid) and request throughput (dotted) against the offered
    load, per side."""
    measured = [result for result in results if result["points"]]
    if not measured:
        return None
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 4.5))
    kind = measured[0]["points"][0]["load"]["kind"]
    for result in measured:
        colour = _SIDE_COLOURS.get(result["role"])
        loads = [p["load"]["value"] for p in result["points"]]
        axis.plot(
            loads,
            [p["goodput"] or 0.0 for p in result["points"]],
            "-",
            marker="o",
            color=colour,
            label=f"{result['role']} goodput",
        )
        axis.plot(
            loads,
            [p["request_throughput"] or 0.0 for p in result["points"]],
            ":",
            color=colour,
            label=f"{result['role']} throughput",
        )
    axis.set_xscale("log", base=2)
    levels = sorted({p["load"]["value"] for result in measured for p in result["points"]})
    axis.set_xticks(levels, [f"{level:g}" for level in levels])
    axis.minorticks_off()
    axis.set_xlabel("concurrency (requests in flight)" if kind == "concurrency" else "offered rate (req/s)")
    axis.set_ylabel("req/s")
    axis.set_title(f"goodput vs load (targets: {targets})", fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
