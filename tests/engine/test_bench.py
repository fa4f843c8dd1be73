"""`distill bench engine` runs end to end at smoke size, and its helpers measure what they claim."""

from __future__ import annotations

import subprocess
import sys

from distill.bench.engine_harness import (
    fake_teacher,
    run_measured,
    server_stats,
    side_args,
    steady_rpm,
    worker,
    write_inputs,
)


def test_smoke_run_prints_the_table(tmp_path):
    out = tmp_path / "bench.md"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "distill",
            "bench",
            "engine",
            "--smoke",
            "--only",
            "throughput",
            "--only",
            "inflight",
            "--only",
            "million",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode in (0, 1), result.stderr[-2000:]  # 1 = a target missed, which smoke may do
    text = out.read_text()
    assert "| target | measured | baseline (same run) | result |" in text
    assert "`distill generate` path ≤ 1.3× the floor" in text
    assert "bespokelabs-curator" in text
    assert "300 requests in flight against a 1 s-latency server without errors" in text
    assert text.count("200 ok") >= 2  # generate and dispatch finished every prompt
    assert "300 ok, 0 errors" in text
    assert "resume with" in text and "starts sending < 3 s" in text


def test_floor_side_is_measured_in_its_own_process(tmp_path):
    inputs = write_inputs(tmp_path / "in.jsonl", 50)
    with fake_teacher(latency_ms=5) as url:
        result = run_measured(worker("floor", side_args(url, inputs, 8)))
        stats = server_stats(url)
    assert result.returncode == 0
    assert result.inside["ok"] == 50 and result.inside["errors"] == 0
    assert stats["total"] == 50
    # Whole-process CPU includes interpreter start-up, so it exceeds the hot loop's own CPU.
    assert result.cpu_s > result.inside["work_cpu_s"] > 0
    assert result.max_rss_mb > 10


def test_steady_rate_skips_the_start_up_burst():
    per_second = {str(1000 + s): 10 for s in range(30)}
    per_second["1000"] = 60  # a burst in the first second
    rpm, window = steady_rpm(per_second)
    assert window == 24 and rpm == 600.0
