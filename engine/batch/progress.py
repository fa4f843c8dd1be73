"""What batch mode shows while batches run: files per state with their request counts, records, spend, ETA.

A live panel on a terminal, a log line every ``log_every_s`` elsewhere; both read the journal's in-memory
state on a timer. The ETA comes from the rate at which the provider finished requests since this process started.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any, TextIO

from distill.engine.batch.journal import STATES, Journal
from distill.engine.cost import CostMeter
from distill.engine.ledger import Ledger
from distill.engine.progress import ProgressDisplay, format_eta, format_spend

# Order of the stages on screen: the way a file moves.
STAGES = ("planned", "submitting", "uploaded", *STATES, "collected", "settled")


def batch_figures(
    journal: Journal, ledger: Ledger, total: int, started: tuple[float, int] | None
) -> dict[str, Any]:
    """Every figure the display shows, as plain data (also used by `distill batches status`)."""
    files: Counter[str] = Counter()
    requests: Counter[str] = Counter()
    finished: Counter[str] = Counter()
    for entry in journal.files.values():
        stage = entry.stage
        files[stage] += 1
        requests[stage] += entry.requests
        counts = entry.request_counts or {}
        finished[stage] += int(counts.get("completed", 0)) + int(counts.get("failed", 0))
    running = [stage for stage in ("validating", "in_progress", "finalizing", "cancelling") if files[stage]]
    finished_running = sum(finished[stage] for stage in running)
    left = sum(requests[stage] for stage in running) - finished_running
    left += sum(requests[stage] for stage in ("planned", "submitting", "uploaded"))
    eta = None
    if started is not None:
        then, finished_then = started
        rate = (finished_running - finished_then) / max(1e-9, time.monotonic() - then)
        eta = left / rate if rate > 0 else None
    return {
        "files": {stage: files[stage] for stage in STAGES if files[stage]},
        "requests": {stage: requests[stage] for stage in STAGES if files[stage]},
        "finished": {stage: finished[stage] for stage in STAGES if files[stage]},
        "finished_running": finished_running,
        "records": ledger.finished,
        "total": total,
        "eta_s": eta,
    }


def render_lines(figures: dict[str, Any], cost: CostMeter) -> list[str]:
    parts = []
    for stage, count in figures["files"].items():
        text = f"{stage} {count}"
        if stage in ("validating", "in_progress", "finalizing", "cancelling"):
            text += f" ({figures['finished'][stage]:,}/{figures['requests'][stage]:,} requests)"
        parts.append(text)
    spend = format_spend(cost.total_spend, cost.currency, cost.budget)
    done, total = figures["records"], figures["total"]
    percent = 100.0 * done / total if total else 100.0
    return [
        "batches: " + (", ".join(parts) or "none"),
        f"records {done:,}/{total:,} ({percent:.1f}%)  ETA {format_eta(figures['eta_s'])}  spend {spend}",
    ]


class BatchProgress(ProgressDisplay):
    """The batch run's figures (see `batch_figures`), on the same timer as the online run's display."""

    live_interval_s = 0.5
    refresh_per_second = 2

    def __init__(
        self,
        journal: Journal,
        cost: CostMeter,
        total: int,
        ledger: Ledger,
        *,
        enabled: bool = True,
        stream: TextIO | None = None,
        log_every_s: float = 10.0,
    ) -> None:
        super().__init__(enabled=enabled, stream=stream, log_every_s=log_every_s)
        self.journal, self.cost, self.total, self.ledger = journal, cost, total, ledger
        self._started: tuple[float, int] | None = None

    def lines(self) -> list[str]:
        figures = batch_figures(self.journal, self.ledger, self.total, self._started)
        if self._started is None:
            self._started = (time.monotonic(), figures["finished_running"])
        return render_lines(figures, self.cost)

    def start(self) -> None:
        if self.enabled:
            self.lines()  # the ETA's rate counts from here
        super().start()
