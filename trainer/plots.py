"""The loss-curve PNG written at the end of a run."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def loss_curve_png(curves: dict[str, Sequence[Sequence[float]]], path: Path, title: str) -> Path:
    """``curves`` maps a label (train, val, eval) to [step, loss] points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4), dpi=110)
    styles = {"train": dict(linewidth=1, alpha=0.8), "val": dict(marker="o"), "eval": dict(marker="s")}
    for label, points in curves.items():
        if points:
            steps, losses = zip(*points, strict=True)
            axes.plot(steps, losses, label=label, **styles.get(label, {}))
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("loss (mean over answer tokens)")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
