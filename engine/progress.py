"""What a long run shows while it works: a live panel on a terminal, a log line now and then elsewhere.

Both read the same figures: records done of the total, request rate, live RPM/TPM against the limits
(from `Admission.snapshot()`), requests in flight, errors by class (every failed attempt, retried or not),
tokens, money and an ETA. Rendering runs on a timer, never per request.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from typing import Any, Protocol, TextIO

from distill.engine.cost import CostMeter
from distill.engine.writer import RunStats


def _si(value: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.1f}{unit}"
    return f"{value:.0f}"


def format_eta(seconds: float | None) -> str:
    """A duration as the progress displays show it: ``4m05s``, ``2h13m``, ``?`` when unknown."""
    if seconds is None:
        return "?"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


def format_spend(spend: float, currency: str | None, budget: float | None) -> str:
    """Money spent as the displays show it: ``0.1234 USD of 5``, or ``unpriced`` with no price set."""
    text = f"{spend:.4f} {currency}".strip() if currency else "unpriced"
    return text + (f" of {budget:g}" if budget is not None else "")


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{name} {count}" for name, count in counter.most_common()) or "none"


class Snapshots(Protocol):
    """Live admission figures: an `Admission`, or the lanes of a session (one endpoint or a pool)."""

    def snapshot(self) -> dict[str, Any]: ...


def figures(stats: RunStats, admission: Snapshots, cost: CostMeter, errors: Counter[str]) -> dict[str, Any]:
    """Every figure the displays show, as plain data (also handy for tests)."""
    elapsed = max(stats.elapsed_s, 1e-9)
    rate = stats.finished / elapsed
    remaining = max(0, stats.total - stats.done)
    snapshot = admission.snapshot()
    return {
        "done": stats.done,
        "total": stats.total,
        "percent": 100.0 * stats.done / stats.total if stats.total else 100.0,
        "req_per_s": rate,
        "eta_s": remaining / rate if rate > 0 else None,
        "rpm": snapshot["rpm"],
        "rpm_limit": snapshot["limits"]["rpm"],
        "tpm": snapshot["tpm"],
        "tpm_limit": snapshot["limits"]["tpm"],
        "in_flight": snapshot["in_flight"],
        "max_in_flight": snapshot["limits"]["max_in_flight"],
        "paused_s": snapshot["paused_s"],
        "accepted": stats.accepted,
        "rejected": dict(stats.rejected),
        "failed": dict(stats.failed),
        "errors": dict(errors),
        "prompt_tokens": cost.prompt_tokens,
        "completion_tokens": cost.completion_tokens,
        "spend": cost.total_spend,
        "currency": cost.currency,
        "budget": cost.budget,
        "endpoints": snapshot.get("endpoints", []),
    }


def render_lines(f: dict[str, Any]) -> list[str]:
    def limit(value: float | None) -> str:
        return _si(value) if value else "∞"

    spend = format_spend(f["spend"], f["currency"], f["budget"])
    paused = f"  paused {f['paused_s']:.1f}s" if f["paused_s"] else ""
    return [
        f"done {f['done']:,}/{f['total']:,} ({f['percent']:.1f}%)  {f['req_per_s']:.1f} req/s  "
        f"ETA {format_eta(f['eta_s'])}",
        f"RPM {_si(f['rpm'])}/{limit(f['rpm_limit'])}  TPM {_si(f['tpm'])}/{limit(f['tpm_limit'])}  "
        f"in flight {f['in_flight']}/{f['max_in_flight']}{paused}",
        f"accepted {f['accepted']:,}  rejected {sum(f['rejected'].values()):,} ({_counts(Counter(f['rejected']))})  "
        f"failed {sum(f['failed'].values()):,} ({_counts(Counter(f['failed']))})",
        f"errors {_counts(Counter(f['errors']))}  tokens {_si(f['prompt_tokens'])} in / "
        f"{_si(f['completion_tokens'])} out  spend {spend}",
        *(
            f"  {e['endpoint']}: {e['state']}  {e['requests']:,} sent, {e['answers']:,} answered  "
            f"in flight {e['in_flight']}  RPM {_si(e['rpm'])}  errors {_counts(Counter(e['errors']))}"
            for e in f["endpoints"]
        ),
    ]


class ProgressDisplay:
    """Lines shown on a timer: a rich live panel on a TTY, else one log line every ``log_every_s``.

    A subclass says what to show (``lines``); this class decides when and where. Used by the online run
    (`ProgressReporter`) and by batch mode (``BatchProgress``).
    """

    live_interval_s = 0.25  # how often the live panel is redrawn
    refresh_per_second = 4

    def __init__(
        self, *, enabled: bool = True, stream: TextIO | None = None, log_every_s: float = 10.0
    ) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.live = enabled and self.stream.isatty()
        self.log_every_s = log_every_s
        self._task: asyncio.Task | None = None
        self._live_display: Any = None

    def lines(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        if not self.enabled:
            return
        if self.live:
            from rich.console import Console
            from rich.live import Live
            from rich.text import Text

            self._text = Text
            self._live_display = Live(
                Text("starting…"),
                console=Console(file=self.stream),
                refresh_per_second=self.refresh_per_second,
            )
            self._live_display.start()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        interval = self.live_interval_s if self.live else self.log_every_s
        while True:
            await asyncio.sleep(interval)
            if self.live:
                self._live_display.update(self._text("\n".join(self.lines())))
            else:
                print("generate: " + " | ".join(self.lines()), file=self.stream, flush=True)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._live_display is not None:
            self._live_display.update(self._text("\n".join(self.lines())))
            self._live_display.stop()
            self._live_display = None


class ProgressReporter(ProgressDisplay):
    """Runs beside the dispatcher: the online run's figures (see `figures`)."""

    def __init__(
        self,
        stats: RunStats,
        admission: Snapshots,
        cost: CostMeter,
        errors: Counter[str],
        *,
        enabled: bool = True,
        stream: TextIO | None = None,
        log_every_s: float = 10.0,
    ) -> None:
        super().__init__(enabled=enabled, stream=stream, log_every_s=log_every_s)
        self.stats, self.admission, self.cost, self.errors = stats, admission, cost, errors

    def lines(self) -> list[str]:
        return render_lines(figures(self.stats, self.admission, self.cost, self.errors))
