"""`distill bench batch`: plan, upload and submit a large batch-mode run, timed, with the client's peak memory.

Writes an input file (Chinese contract-like rows, not timed), starts the fake teacher as its own process
with batches held in ``validating`` (so the provider side does no work while the client is measured), then
runs ``distill generate --mode batch --no-wait`` as a real process: validate the input, split every request
into batch files within the limits, upload them and create their batches, then return. The times come from
the journal (each step's fsync'd timestamp), the peak RSS from the kernel (``wait4``) for that process alone,
and the limits are checked on what the server received.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

_PARTIES = ("北京星河科技有限公司", "上海云帆贸易有限公司", "深圳海岸数据有限公司", "Acme Trading Ltd")
_TERMS = ("付款条件", "交付与验收", "违约责任", "保密条款", "争议解决", "知识产权")


class BatchBenchConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requests: int = Field(default=1_000_000, ge=1, description="requests in the run (rows x samples)")
    samples_per_input: int = Field(default=1, ge=1, le=1000, description="samples per input row")
    max_requests_per_file: int = Field(default=50_000, ge=1, description="batch.max_requests_per_file")
    max_bytes_per_file: int = Field(default=200_000_000, ge=4096, description="batch.max_bytes_per_file")
    work_dir: Path | None = Field(
        default=None, description="where input, run and server files go (default: tmp)"
    )
    out: Path | None = Field(default=None, description="also write the figures to this JSON file")


def write_input(path: Path, rows: int, *, seed: int = 11) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as handle:
        for index in range(rows):
            first, second = rng.sample(_PARTIES, 2)
            text = (
                f"合同编号 HT-{index:07d}:甲方 {first} 与乙方 {second} 约定,{rng.choice(_TERMS)}如下:"
                f"金额人民币 {rng.randint(1, 999)} 万元,于 2026 年 {rng.randint(1, 12)} 月交付。"
            )
            handle.write(json.dumps({"id": f"c{index}", "input": text}, ensure_ascii=False) + "\n")


def _start_server(storage: Path) -> tuple[subprocess.Popen, str]:
    command = [
        sys.executable,
        "-m",
        "distill",
        "serve-fake-teacher",
        "--port",
        "0",
        "--batch-storage-dir",
        str(storage),
        "--batch-validating-ms",
        str(3_600_000),  # held in validating: no execution beside the measured client
        "--batch-max-requests",
        str(50_000),
    ]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = server.stdout.readline() if server.stdout else ""
    if not line.startswith("listening on "):
        server.kill()
        raise RuntimeError(f"fake teacher did not start: {line!r}")
    return server, line.removeprefix("listening on ").strip()


def _timed(command: list[str]) -> tuple[bytes, int, float, Any]:
    """Run ``command``: its stdout, exit status, seconds and its own resource usage (``wait4``)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out = process.stdout.read() if process.stdout else b""
    _, status, usage = os.wait4(process.pid, 0)
    return out, os.waitstatus_to_exitcode(status), time.perf_counter() - started, usage


def _own_rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def run_bench(config: BatchBenchConfig) -> dict[str, Any]:
    work = Path(config.work_dir or tempfile.mkdtemp(prefix="distill-bench-batch-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = -(-config.requests // config.samples_per_input)
    source = work / "in.jsonl"
    write_input(source, rows)
    run_dir = work / "run"
    settings = {
        "input": str(source),
        "output_dir": str(run_dir),
        "samples_per_input": config.samples_per_input,
        "mode": "batch",
        "batch": {
            "wait": False,
            "max_requests_per_file": config.max_requests_per_file,
            "max_bytes_per_file": config.max_bytes_per_file,
            "poll_initial_s": 0.05,
        },
    }
    server, url = _start_server(work / "server")
    try:
        settings["teacher"] = {"base_url": url + "/v1", "model": "fake-teacher", "api_key_env": None}
        config_path = work / "generate.yaml"
        config_path.write_text(yaml.safe_dump(settings, allow_unicode=True))
        generate = [sys.executable, "-m", "distill", "generate", "--config", str(config_path)]
        # Baseline, same input: a dry run reads, validates and renders every request, and sends nothing.
        _, _, dry_s, dry_usage = _timed(generate + ["--dry-run"])
        started = time.time()
        out, status, total_s, usage = _timed(generate + ["--no-progress"])
        summary = json.loads(out)
        with urllib.request.urlopen(url + "/stats/batches", timeout=60) as response:
            stats = json.loads(response.read())
    finally:
        server.terminate()
        server.wait(timeout=60)
    events = [json.loads(line) for line in (run_dir / "batches" / "journal.jsonl").read_bytes().splitlines()]
    planned = [event for event in events if event["event"] == "planned"]
    first = next(event["at"] for event in events if event["event"] == "pass")
    last_planned = max(event["at"] for event in planned)
    last_created = max(event["at"] for event in events if event["event"] == "created")
    figures = {
        "requests": sum(event["requests"] for event in planned),
        "files": len(planned),
        "max_requests_in_a_file": max(event["requests"] for event in planned),
        "max_bytes_in_a_file": max(event["bytes"] for event in planned),
        "bytes_total": sum(event["bytes"] for event in planned),
        "within_limits": all(
            event["requests"] <= config.max_requests_per_file and event["bytes"] <= config.max_bytes_per_file
            for event in planned
        ),
        "batches_created": stats["batches_created"],
        "start_to_plan_s": round(first - started, 2),
        "plan_s": round(last_planned - first, 2),
        "upload_and_create_s": round(last_created - last_planned, 2),
        "total_s": round(total_s, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "exit_status": status,
        "status": summary["status"],
        # ru_maxrss of a child starts at its parent's RSS at fork: a peak above this figure is the child's own.
        "bench_process_rss_mb": round(_own_rss_mb(), 1),
        "baseline_dry_run_s": round(dry_s, 2),
        "baseline_dry_run_peak_rss_mb": round(dry_usage.ru_maxrss / 1024, 1),
    }
    print(json.dumps(figures, indent=2))
    if config.out:
        config.out.write_text(json.dumps(figures, indent=2))
    return figures


def bench_batch(config: BatchBenchConfig) -> int:
    figures = run_bench(config)
    ok = figures["within_limits"] and figures["batches_created"] == figures["files"]
    return 0 if ok and figures["status"] == "batches_open" else 1
