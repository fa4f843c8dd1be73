"""Student against teacher under load: one sweep per side with the same prompts, the knee, cost per 1,000 requests.

A sweep is a list of load points (concurrency levels, or Poisson request rates) measured one after another on
one session (evaluator.latency), each summarised by evaluator.load_metrics. The knee is the highest load whose
share of requests meeting the latency targets reaches the attainment asked for: the load the side can take
while still serving its users as promised. Cost per 1,000 requests at each point: from per-million-token prices
and the tokens the point's requests used (what an API charges), or from a machine's price per hour spread over
the requests per second it completed at that point (what a self-hosted student costs).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from distill.engine.types import ChatRequest
from distill.evaluator.latency import LoadPoint, LoadProfile, measure_point, measuring_session, warm_up
from distill.evaluator.load_metrics import LatencyTargets, knee, summarise_point
from distill.evaluator.roi import cost_per_call_from_hourly, cost_per_call_from_price

from distill.endpoint import Endpoint, Price


@dataclass
class ServingSide:
    """One side of the comparison: where it is served, what it is asked, and what it costs."""

    role: Literal["student", "teacher"]
    label: str
    endpoint: Endpoint
    requests: list[ChatRequest]
    price: Price | None = None  # per million tokens (an API)
    cost_per_hour: float | None = None  # a machine (a self-hosted server)


def cost_per_1k(side: ServingSide, point: dict[str, Any]) -> tuple[float | None, str]:
    """What 1,000 requests like this point's cost on ``side``, and the basis of that figure."""
    if side.price is not None:
        if point["prompt_tokens_mean"] is None or point["output_tokens_mean"] is None:
            return None, "price per million tokens, but no token counts were returned"
        per_call = cost_per_call_from_price(
            side.price.input_per_million,
            side.price.output_per_million,
            point["prompt_tokens_mean"],
            point["output_tokens_mean"],
        )
        return per_call * 1000, f"{side.price.currency} per million tokens × measured tokens"
    if side.cost_per_hour is not None:
        per_call = cost_per_call_from_hourly(side.cost_per_hour, point["request_throughput"])
        return (
            None if per_call is None else per_call * 1000
        ), "machine price per hour / measured requests per second"
    return None, "no price given"


async def sweep(
    side: ServingSide,
    load: LoadProfile,
    targets: LatencyTargets,
    *,
    budget_s: float | None = None,
    samples: bool = False,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every point of ``load`` against ``side`` (lowest load first), within ``budget_s`` seconds if given."""
    started = time.perf_counter()
    cpu_started = time.process_time()
    points: list[dict[str, Any]] = []
    skipped: list[str] = []
    plan = load.points()
    async with measuring_session(side.endpoint, load.max_in_flight()) as session:
        await warm_up(session, side.requests, load.warmup)
        for index, point in enumerate(plan):
            spent = time.perf_counter() - started
            last = points[-1]["wall_s"] if points else 0.0
            if budget_s is not None and points and spent + last > budget_s:
                skipped = [p.label for p in plan[index:]]
                say(f"{side.role}: time budget of {budget_s:g} s reached; not measured: {', '.join(skipped)}")
                break
            result = await measure_point(
                session,
                side.requests,
                point,
                count=load.requests_at(point),
                duration_s=load.duration_s,
                rate_cap=load.rate_cap,
                seed=load.seed + index,
                tag=f"{side.role}-serve",
            )
            summary = {"load": point.model_dump(), **summarise_point(result, targets, samples=samples)}
            summary["cost_per_1k_requests"], summary["cost_basis"] = cost_per_1k(side, summary)
            points.append(summary)
            say(_progress(side, point, summary))
    best = knee(points, targets)
    return {
        "role": side.role,
        "label": side.label,
        "model": side.endpoint.model,
        "base_url": side.endpoint.base_url,
        "profile": load.profile,
        "points": points,
        "knee": best,
        "skipped": skipped,
        "wall_s": time.perf_counter() - started,
        "client_cpu_s": time.process_time() - cpu_started,
    }


def _progress(side: ServingSide, point: LoadPoint, summary: dict[str, Any]) -> str:
    def ms(metric: str) -> str:
        value = summary[metric]["p50"]
        return "—" if value is None else f"{value:.0f}"

    throughput = summary["request_throughput"] or 0.0
    return (
        f"{side.role} {point.label}: {summary['completed']}/{summary['requests']} ok, {throughput:.2f} req/s, "
        f"TTFT p50 {ms('ttft_ms')} ms, TPOT p50 {ms('tpot_ms')} ms, E2EL p50 {ms('e2el_ms')} ms, "
        f"attainment {summary['attainment']:.0%}"
    )


def run_sweep(side: ServingSide, load: LoadProfile, targets: LatencyTargets, **kwargs: Any) -> dict[str, Any]:
    """Synchronous :func:`sweep` (its own event loop)."""
    return asyncio.run(sweep(side, load, targets, **kwargs))


def headline(result: dict[str, Any]) -> dict[str, Any] | None:
    """The point that stands for a side in one-number summaries: its knee, else its lowest load."""
    points = result["points"]
    if not points:
        return None
    return points[result["knee"] if result["knee"] is not None else 0]


def _cell(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def markdown_table(results: Sequence[dict[str, Any]], currency: str = "") -> str:
    """One row per (side, point); the knee of each side is starred."""
    lines = [
        "| side | load | ok / failed | req/s | goodput req/s | attainment | output tok/s | total tok/s | "
        "TTFT p50 / p90 / p99 ms | TPOT p50 / p99 ms | ITL p50 / p99 ms | E2EL p50 / p90 / p99 ms | "
        f"cost / 1k req{(' ' + currency) if currency else ''} |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for result in results:
        for index, point in enumerate(result["points"]):
            load = LoadPoint(**point["load"]).label + (" ★" if index == result["knee"] else "")
            ttft, tpot, itl, e2el = (point[m] for m in ("ttft_ms", "tpot_ms", "itl_ms", "e2el_ms"))
            lines.append(
                f"| {result['role']} | {load} | {point['completed']} / {point['failed']} | "
                f"{_cell(point['request_throughput'], 2)} | {_cell(point['goodput'], 2)} | "
                f"{_cell(point['attainment'] and point['attainment'] * 100)}% | "
                f"{_cell(point['output_token_throughput'])} | {_cell(point['total_token_throughput'])} | "
                f"{_cell(ttft['p50'])} / {_cell(ttft['p90'])} / {_cell(ttft['p99'])} | "
                f"{_cell(tpot['p50'], 1)} / {_cell(tpot['p99'], 1)} | {_cell(itl['p50'], 1)} / {_cell(itl['p99'], 1)} | "
                f"{_cell(e2el['p50'])} / {_cell(e2el['p90'])} / {_cell(e2el['p99'])} | "
                f"{_cell(point['cost_per_1k_requests'], 4)} |"
            )
    return "\n".join(lines)


def headline_label(result: dict[str, Any]) -> str:
    """Which point :func:`headline` picked, in words."""
    point = headline(result)
    if point is None:
        return "no point measured"
    where = LoadPoint(**point["load"]).label
    return (
        f"at the knee ({where})" if result["knee"] is not None else f"at the lowest load ({where}; no knee)"
    )


def report_lines(latency: dict[str, dict[str, Any]], order: Sequence[str], targets: str) -> list[str]:
    """The evaluation report's latency section: how it was measured, each side's knee, and every point."""
    results = [{**latency[name], "role": name} for name in order if latency.get(name)]
    if not results:
        return []
    lines = [
        "## Latency and throughput under load",
        "",
        "Streamed through the engine's client; no retries; one sweep per system, lowest load first. "
        f"Goodput counts requests meeting every target ({targets}); ★ marks the knee, the highest load where "
        "enough requests met them. The seed's table uses each system's knee.",
        "",
    ]
    for result in results:
        note = " (cached)" if result.get("cached") else ""
        skipped = (
            f"; not measured (time budget): {', '.join(result['skipped'])}" if result.get("skipped") else ""
        )
        lines.append(
            f"- {result['role']}{note}: {result['label']}; prompt: {result.get('prompt', 'same instruction')}; "
            f"{headline_label(result)}{skipped}."
        )
    return [*lines, "", markdown_table(results), ""]
