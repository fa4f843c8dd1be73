"""The progress display's figures and its plain log lines when stderr is not a terminal."""

from __future__ import annotations

import asyncio
import io
from collections import Counter

from distill.engine.admission import Admission
from distill.engine.cost import CostMeter
from distill.engine.progress import ProgressReporter, figures, render_lines
from distill.engine.writer import RunStats

from distill.endpoint import Price


def test_figures_and_lines():
    stats = RunStats(total=200, finished_before=50)
    stats.accepted = 40
    stats.rejected.update({"format": 6, "refusal": 2})
    stats.failed.update({"server_error": 2})
    cost = CostMeter(Price(input_per_million=1, output_per_million=2, currency="USD"), budget=10)
    cost.add(1_000_000, 500_000)
    admission = Admission(rpm=600, tpm=100_000, max_in_flight=32)
    f = figures(stats, admission, cost, Counter({"server_error": 5, "rate_limited": 1}))
    assert (f["done"], f["total"]) == (100, 200) and f["percent"] == 50.0
    assert f["eta_s"] is not None and f["eta_s"] > 0 and f["max_in_flight"] == 32
    assert f["rpm_limit"] is not None and f["spend"] == 2.0
    text = "\n".join(render_lines(f))
    assert "done 100/200 (50.0%)" in text and "in flight 0/32" in text
    assert "format 6" in text and "server_error 2" in text and "rate_limited 1" in text
    assert "spend 2.0000 USD of 10" in text and "1.0M in / 500.0k out" in text


def test_plain_log_lines_when_not_a_terminal():
    async def run() -> str:
        stream = io.StringIO()
        stats = RunStats(total=10, finished_before=0)
        reporter = ProgressReporter(
            stats, Admission(None, None, 4), CostMeter(None), Counter(), stream=stream, log_every_s=0.05
        )
        reporter.start()
        await asyncio.sleep(0.3)
        await reporter.stop()
        return stream.getvalue()

    output = asyncio.run(run())
    lines = [line for line in output.splitlines() if line.startswith("generate: done 0/10")]
    assert len(lines) >= 2 and "\x1b[" not in output  # no terminal escapes in a log
