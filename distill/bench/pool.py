"""``distill bench pool``: a pool of four fake endpoints, each enforcing 600 RPM.

- rate: the whole ``distill generate`` path over the pool for ~75 s; the achieved rate over the steady
  window (whole seconds after the first five, from the servers' own counts) against the summed 2,400 RPM
  (target ≥ 97%), and the 429s the servers sent (target 0).
- kill: the same pool, one endpoint killed (SIGKILL) once it has answered 200 requests; the run must end
  complete with exactly one record per (input, sample), and the requests sent again because of the kill
  must be at most what that endpoint had in flight.

Each fake endpoint is its own process (``distill serve-fake-teacher``); the generator runs in this one.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
import threading
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from distill.bench.engine_harness import (
    TASK,
    fake_teacher_process,
    server_stats,
    steady_rpm,
    write_inputs,
)
from distill.endpoint import Endpoint
from distill.engine.config import GenerateConfig
from distill.engine.records import iter_records
from distill.engine.runner import run_generation

ENDPOINTS = 4
RPM = 600
LATENCY_MS = 50


def _config(workdir: Path, inputs: Path, urls: list[str], name: str) -> GenerateConfig:
    endpoints = [
        Endpoint(
            base_url=url + "/v1",
            model="fake-teacher",
            api_key_env=None,
            label=f"fake-{i}",
            rpm=RPM,
            concurrency=64,
        )
        for i, url in enumerate(urls)
    ]
    return GenerateConfig(
        input=inputs,
        output_dir=workdir / name,
        teacher=endpoints[0],
        pool=endpoints[1:],
        task=TASK,
        max_tokens=256,
    )


def rate(workdir: Path, seconds: float) -> dict[str, Any]:
    rows = int(ENDPOINTS * RPM * seconds / 60)
    inputs = write_inputs(workdir / "rate.jsonl", rows)
    with ExitStack() as stack:
        servers = [
            stack.enter_context(fake_teacher_process(latency_ms=LATENCY_MS, rpm=RPM, burst_s=5))
            for _ in range(ENDPOINTS)
        ]
        urls = [url for url, _ in servers]
        summary = run_generation(_config(workdir, inputs, urls, "rate"), progress=False)
        stats = [server_stats(url) for url in urls]
    ok_by_second: Counter = Counter()
    for one in stats:
        ok_by_second.update({second: n for second, n in one["ok_by_second"].items()})
    steady, window_s = steady_rpm(dict(ok_by_second))
    limited = sum(one["by_status"].get("429", 0) for one in stats)
    target = ENDPOINTS * RPM
    return {
        "status": summary["status"],
        "requests": rows,
        "steady_rpm": round(steady, 1),
        "steady_window_s": window_s,
        "share_of_summed_limit": round(steady / target, 4),
        "responses_429": limited,
        "per_endpoint_answers": [one["by_status"].get("200", 0) for one in stats],
        "passed": steady >= 0.97 * target and limited == 0 and summary["status"] == "complete",
    }


def kill(workdir: Path, rows: int, kill_after: int) -> dict[str, Any]:
    inputs = write_inputs(workdir / "kill.jsonl", rows)
    seen: dict[str, Any] = {}
    with ExitStack() as stack:
        servers = [
            stack.enter_context(fake_teacher_process(latency_ms=LATENCY_MS, rpm=RPM, burst_s=5))
            for _ in range(ENDPOINTS)
        ]
        victim_url, victim = servers[-1]

        def kill_when_busy() -> None:
            while victim.poll() is None:
                stats = server_stats(victim_url)
                if stats["by_status"].get("200", 0) >= kill_after:
                    seen["in_flight_at_kill"] = stats["in_flight"]
                    seen["answered_before_kill"] = stats["by_status"].get("200", 0)
                    os.killpg(victim.pid, signal.SIGKILL)
                    seen["killed_at"] = time.monotonic()
                    return
                time.sleep(0.01)

        killer = threading.Thread(target=kill_when_busy, daemon=True)
        killer.start()
        started = time.monotonic()
        summary = run_generation(
            _config(workdir, inputs, [url for url, _ in servers], "kill"), progress=False
        )
        killer.join(5)
    counts = Counter((record.id, record.sample_index) for record in iter_records(workdir / "kill"))
    victim_figures = summary["endpoints"][-1]
    sent = sum(e["requests"] for e in summary["endpoints"])
    resent = sent - len(counts)
    return {
        "status": summary["status"],
        "records": len(counts),
        "expected_records": rows,
        "exactly_once": len(counts) == rows and max(counts.values(), default=0) == 1,
        "killed_after_s": round(seen.get("killed_at", started) - started, 1),
        "victim_in_flight_at_kill": seen.get("in_flight_at_kill"),
        "victim_errors": victim_figures["errors"],
        "victim_state": victim_figures["state"],
        "requests_sent": sent,
        "resent": resent,
        "passed": summary["status"] == "complete"
        and len(counts) == rows
        and max(counts.values(), default=0) == 1
        and resent
        <= victim_figures["errors"].get("connection", 0) + victim_figures["errors"].get("timeout", 0)
        and resent <= 64,
    }


class PoolBenchConfig(BaseModel):
    """``distill bench pool``'s settings."""

    model_config = ConfigDict(extra="forbid")

    seconds: float = Field(default=75.0, gt=0, description="length of the rate run")
    kill_rows: int = Field(default=1500, ge=1, description="requests in the kill run")
    kill_after: int = Field(default=200, ge=1, description="answers of the victim before the kill")
    only: list[Literal["rate", "kill"]] | None = Field(
        default=None, description="run only this part (repeatable) (default: both)"
    )


def bench_pool(config: PoolBenchConfig) -> int:
    """Run the parts asked for and print their figures as JSON."""
    workdir = Path(tempfile.mkdtemp(prefix="distill-bench-pool-"))
    report: dict[str, Any] = {}
    if not config.only or "rate" in config.only:
        report["rate"] = rate(workdir, config.seconds)
    if not config.only or "kill" in config.only:
        report["kill"] = kill(workdir, config.kill_rows, config.kill_after)
    print(json.dumps(report, indent=2))
    return 0
