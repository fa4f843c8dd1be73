"""The four sections of ``distill bench engine``; each appends its rows (and raw figures) to the report."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from distill.bench.engine_harness import (
    ProcessResult,
    Report,
    Row,
    Sizes,
    curator_available,
    fake_teacher,
    run_measured,
    server_stats,
    side_args,
    steady_rpm,
    worker,
    write_config,
    write_inputs,
)
from distill.bench.engine_workers import peak_rss_mb

Log = Callable[[str], None]
CPU_TARGET = 1.3  # `distill generate`'s whole-process CPU per request, against the bare aiohttp loop


def _side_figures(result: ProcessResult, stats: dict[str, Any]) -> dict[str, Any]:
    ok = result.inside.get("ok", 0) or 0
    return {
        "ok": ok,
        "errors": result.inside.get("errors"),
        "wall_s": result.inside.get("wall_s"),
        "process_cpu_s": round(result.cpu_s, 3),
        "work_cpu_s": result.inside.get("work_cpu_s"),
        "cpu_ms_per_request": round(result.cpu_s * 1000 / ok, 4) if ok else None,
        "max_rss_mb": result.inside.get("peak_rss_mb") or round(result.max_rss_mb, 1),
        "server_requests": stats.get("total"),
        "server_by_status": stats.get("by_status"),
        "returncode": result.returncode,
        **({"stderr_tail": result.inside["stderr_tail"]} if "stderr_tail" in result.inside else {}),
    }


def throughput(report: Report, sizes: Sizes, workdir: Path, log: Log) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    inputs = write_inputs(workdir / "inputs.jsonl", sizes.prompts)
    sides = ["floor", "dispatch", "generate", "floor_collector"] + (
        ["curator"] if curator_available(sizes.curator_python) else []
    )
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
    with fake_teacher(latency_ms=50) as url:
        for repeat in range(sizes.repeats):
            for side in sides:  # interleaved, so background load hits every side alike
                server_stats(url, reset=True)
                if side == "generate":
                    config = write_config(
                        workdir / f"generate-{repeat}.yaml",
                        input_path=inputs,
                        output_dir=workdir / f"run-{repeat}",
                        base_url=url,
                        concurrency=sizes.concurrency,
                    )
                    command = worker("generate", {"config": str(config), "concurrency": sizes.concurrency})
                else:
                    python = sizes.curator_python if side == "curator" else None
                    command = worker(side, side_args(url, inputs, sizes.concurrency), python)
                figures = _side_figures(run_measured(command), server_stats(url))
                log(
                    f"  {side}: {figures['ok']} ok, {figures['process_cpu_s']} s CPU, {figures['wall_s']} s wall"
                )
                runs[side].append(figures)
    # The median run of each side (by CPU per request): one lucky or unlucky run on a shared machine moves
    # neither the figure nor the verdict.
    best = {
        side: sorted(rows, key=lambda r: r["cpu_ms_per_request"] or float("inf"))[len(rows) // 2]
        for side, rows in runs.items()
    }
    report.details["throughput"] = {
        "prompts": sizes.prompts,
        "in_flight": sizes.concurrency,
        "latency_ms": 50,
        "median_of": sizes.repeats,
        "runs": runs,
    }
    floor = best["floor"]
    shape = f"{sizes.prompts:,} prompts, 50 ms, {sizes.concurrency} in flight"
    base = f"bare aiohttp+orjson+uvloop loop: {floor['cpu_ms_per_request']} ms CPU/request ({floor['process_cpu_s']} s)"
    for side, label, target in (
        ("generate", "`distill generate` path", CPU_TARGET),
        ("dispatch", "dispatcher alone", None),
        ("floor_collector", "bare loop with the run's garbage-collector settings", None),
    ):
        figures = best[side]
        complete = figures["ok"] == sizes.prompts and not figures["errors"]
        ratio = (figures["cpu_ms_per_request"] or float("inf")) / (
            floor["cpu_ms_per_request"] or float("inf")
        )
        report.rows.append(
            Row(
                f"whole-process CPU per request, {label} ≤ {CPU_TARGET}× the floor "
                f"(median of {sizes.repeats} alternating runs, {shape})"
                if target
                else f"whole-process CPU per request, {label} (reference, {shape})",
                f"{figures['cpu_ms_per_request']} ms ({figures['process_cpu_s']} s), **{ratio:.2f}×**, "
                f"{figures['ok']} ok, wall {figures['wall_s']} s",
                base + f", wall {floor['wall_s']} s",
                (complete and ratio <= target) if target else None,
            )
        )
    # The run collects garbage less often than Python's defaults (distill.engine.collector), the floor does not:
    # the same ratio against a floor with those settings, so neither side is flattered.
    tuned, generate = best["floor_collector"], best["generate"]
    report.rows.append(
        Row(
            f"whole-process CPU per request, `distill generate` path against the bare loop with the run's "
            f"garbage-collector settings (reference, {shape})",
            f"**{(generate['cpu_ms_per_request'] or float('inf')) / (tuned['cpu_ms_per_request'] or float('inf')):.2f}×**",
            f"bare loop with those settings: {tuned['cpu_ms_per_request']} ms CPU/request ({tuned['process_cpu_s']} s)",
            None,
        )
    )
    if "curator" in best:
        # Throughput = answers per second of the work itself (wall), the fastest of the repeats each.
        ours = min(runs["generate"], key=lambda r: r["wall_s"] or float("inf"))
        theirs = min(runs["curator"], key=lambda r: r["wall_s"] or float("inf"))
        speedup = (
            (ours["ok"] / ours["wall_s"]) / (theirs["ok"] / theirs["wall_s"])
            if theirs["ok"]
            else float("inf")
        )
        report.rows.append(
            Row(
                f"throughput ≥ 3× bespokelabs-curator (same work: {shape})",
                f"**{speedup:.2f}×**: `distill generate` {ours['ok']} answers in {ours['wall_s']} s "
                f"({ours['process_cpu_s']} s CPU)",
                f"curator (OpenAI backend): {theirs['ok']} answers in {theirs['wall_s']} s "
                f"({theirs['process_cpu_s']} s CPU, whole process)",
                speedup >= 3 and theirs["ok"] == sizes.prompts,
            )
        )
    else:
        report.rows.append(
            Row("throughput ≥ 3× bespokelabs-curator (same work)", "skipped: not installed", "—", None)
        )


def rpm(report: Report, sizes: Sizes, workdir: Path, log: Log) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    inputs = write_inputs(workdir / "inputs.jsonl", sizes.rpm_prompts)
    results = {}
    # The server's bucket holds 5 s of its limit: a client that bursts or paces above 600 RPM gets 429s.
    with fake_teacher(latency_ms=50, rpm=600, burst_s=5) as url:
        for variant, settings in (("configured", {"rpm": 600}), ("learnt from headers", {})):
            server_stats(url, reset=True)
            time.sleep(5.5)  # let the server's bucket refill between variants
            config = write_config(
                workdir / f"{len(results)}.yaml",
                input_path=inputs,
                output_dir=workdir / f"run-{len(results)}",
                base_url=url,
                concurrency=64,
                **settings,
            )
            result = run_measured(worker("generate", {"config": str(config), "concurrency": 64}))
            stats = server_stats(url)
            ok = stats["by_status"].get("200", 0)
            window = (stats["last_ok"] or 0) - (stats["first_ok"] or 0)
            overall = (ok - 1) / window * 60 if window > 0 else 0.0
            steady, steady_s = steady_rpm(stats["ok_by_second"])
            limited = stats["by_status"].get("429", 0)
            results[variant] = {
                "ok": ok,
                "window_s": round(window, 2),
                "overall_rpm": round(overall, 1),
                "steady_rpm": round(steady, 1),
                "steady_window_s": steady_s,
                "http_429": limited,
                "ok_by_second": stats["ok_by_second"],
                "process": _side_figures(result, stats),
            }
            log(f"  {variant}: {overall:.1f} RPM over {window:.1f} s (steady {steady:.1f}), {limited} × 429")
            configured = variant == "configured"
            passed = min(overall, steady) >= 0.97 * 600 and limited == 0 and ok == sizes.rpm_prompts
            report.rows.append(
                Row(
                    f"server enforcing 600 RPM, limit {variant}: ≥ 97% of it and zero 429s"
                    + (
                        ""
                        if configured
                        else " (reference: the first requests leave before any header is seen)"
                    ),
                    f"{overall:.1f} RPM ({overall / 6:.1f}%) over {window:.1f} s incl. the start-up burst; "
                    f"steady {steady:.1f} RPM ({steady / 6:.1f}%) over {steady_s} s; {limited} × 429, {ok} ok",
                    "server limit 600 RPM, bucket of 5 s",
                    passed if configured else None,
                )
            )
    report.details["rpm"] = results


def inflight(report: Report, sizes: Sizes, workdir: Path, log: Log) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    count = sizes.inflight
    inputs = write_inputs(workdir / "inputs.jsonl", count)
    with fake_teacher(latency_ms=1000) as url:
        config = write_config(
            workdir / "inflight.yaml",
            input_path=inputs,
            output_dir=workdir / "run",
            base_url=url,
            concurrency=count,
            request_timeout_s=300,
            retries=0,
        )
        result = run_measured(worker("generate", {"config": str(config), "concurrency": count}))
        stats = server_stats(url)
    figures = _side_figures(result, stats)
    figures["server_max_in_flight"] = stats["max_in_flight"]
    report.details["inflight"] = figures
    errors = sum(n for status, n in stats["by_status"].items() if status != "200") + (figures["errors"] or 0)
    log(f"  {figures['ok']} ok, max in flight {stats['max_in_flight']}, {errors} errors")
    report.rows.append(
        Row(
            f"{count:,} requests in flight against a 1 s-latency server without errors",
            f"server saw {stats['max_in_flight']:,} at once; {figures['ok']:,} ok, {errors} errors, "
            f"wall {figures['wall_s']} s, peak RSS {figures['max_rss_mb']} MB",
            "—",
            errors == 0 and figures["ok"] == count and stats["max_in_flight"] >= 0.95 * count,
        )
    )


def million(report: Report, sizes: Sizes, workdir: Path, log: Log) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    target, extra = sizes.million, max(1000, sizes.million // 500)
    inputs = write_inputs(workdir / "inputs.jsonl", target + extra)
    details: dict[str, Any] = {"rows": target + extra}
    with fake_teacher(latency_ms=1) as url:
        config = write_config(
            workdir / "million.yaml",
            input_path=inputs,
            output_dir=workdir / "run",
            base_url=url,
            concurrency=256,
        )
        command = worker("generate", {"config": str(config), "concurrency": 256})
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while process.poll() is None and server_stats(url)["total"] < target:
            time.sleep(0.05)
        peak = peak_rss_mb(process.pid)  # read before the kill: wait4's figure has a floor of our own RSS
        os.kill(process.pid, signal.SIGKILL)  # a crash near the end: resume must skip ~1M finished records
        _, _, usage = os.wait4(process.pid, 0)
        process.returncode = -9
        details["first_run"] = {
            "wall_s": round(time.perf_counter() - started, 1),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "max_rss_mb": peak or round(usage.ru_maxrss / 1024, 1),
            "server_requests": server_stats(url)["total"],
        }
        log(
            f"  first run killed after {details['first_run']['server_requests']} requests, "
            f"peak RSS {details['first_run']['max_rss_mb']} MB"
        )
        server_stats(url, reset=True)
        launched = time.time()
        resumed = run_measured(command)
        stats = server_stats(url)
    summary = resumed.inside.get("summary", {})
    session = resumed.inside.get("ok", 0)
    finished_before = (summary.get("done") or 0) - session
    first_send_s = (stats["first_at"] - launched) if stats.get("first_at") else -1.0  # -1: nothing was sent
    details["resume"] = {
        "finished_before": finished_before,
        "first_request_after_s": round(first_send_s, 3),
        "sent": stats["total"],
        "duplicates": stats["duplicate_requests"],
        "status": summary.get("status"),
        "done": summary.get("done"),
        "process": _side_figures(resumed, stats),
    }
    report.details["million"] = details
    rss = details["first_run"]["max_rss_mb"]
    log(f"  resume: first request after {first_send_s:.2f} s with {finished_before} finished records")
    report.rows.append(
        Row(
            f"peak RSS < 300 MB streaming a {target + extra:,}-line input",
            f"{rss} MB (killed after {details['first_run']['server_requests']:,} requests, "
            f"{details['first_run']['wall_s']} s)",
            "—",
            rss < 300,
        )
    )
    report.rows.append(
        Row(
            f"resume with {finished_before:,} finished records starts sending < 3 s",
            f"{first_send_s:.2f} s from process start to the first request; then {stats['total']:,} sent, "
            f"status {summary.get('status')}, peak RSS {details['resume']['process']['max_rss_mb']} MB",
            "—",
            0 <= first_send_s < 3
            and summary.get("status") == "complete"
            and summary.get("done") == target + extra,
        )
    )


SECTION_RUNNERS: dict[str, Callable[[Report, Sizes, Path, Log], None]] = {
    "throughput": throughput,
    "rpm": rpm,
    "inflight": inflight,
    "million": million,
}
