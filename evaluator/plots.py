"""The report's PNG figures: latency distributions and judge-score histograms, one series per system.

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


def latency_plot(latency: dict[str, dict[str, Any]], order: Sequence[str], path: Path) -> Path | None:
    """Box plots of TTFT and end-to-end latency per system, on a log scale (API and local differ by 10×)."""
    systems = [name for name in order if latency.get(name, {}).get("samples", {}).get("e2e_ms")]
    if not systems:
        return None
    plt = _pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, metric, title in (
        (axes[0], "ttft_ms", "time to first token"),
        (axes[1], "e2e_ms", "end-to-end"),
    ):
        data = [[value / 1000.0 for value in latency[name]["samples"][metric]] or [0.0] for name in systems]
        axis.boxplot(data, showfliers=True)
        axis.set_xticks(range(1, len(systems) + 1), systems)
        axis.set_yscale("log")
        axis.set_ylabel("seconds")
        axis.set_title(f"{title} (concurrency {latency[systems[0]]['concurrency']})")
        axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


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
