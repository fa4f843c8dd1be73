"""A streaming load test of one OpenAI-compatible endpoint: TTFT, TPOT, end-to-end latency, req/s, tok/s.

Requests go through the engine's client with ``stream=True`` (so time to first token is measured where the
client sees it) and the engine's dispatcher at a fixed concurrency, without retries: a failure is counted,
not hidden behind a second attempt. Teacher and student are measured by this same code on the same items.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from distill.engine.admission import Admission
from distill.engine.client import OpenAIChatClient
from distill.engine.dispatch import dispatch
from distill.engine.retry import RetryPolicy
from distill.engine.types import CallFailure, ChatRequest, ChatResponse, Job


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0–100) with linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def distribution(values: Sequence[float]) -> dict[str, float | None]:
    return {
        "mean": sum(values) / len(values) if values else None,
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
    }


def summarise(
    responses: Sequence[ChatResponse], failures: Counter[str], wall_s: float, concurrency: int
) -> dict:
    """The figures of one load test, plus the raw samples the plots draw."""
    ttft = [r.ttft_ms for r in responses if r.ttft_ms is not None]
    tpot = [r.tpot_ms for r in responses if r.tpot_ms is not None]
    e2e = [r.latency_ms for r in responses]
    tokens = [r.usage.completion_tokens for r in responses if r.usage is not None]
    return {
        "concurrency": concurrency,
        "requests": len(responses) + sum(failures.values()),
        "succeeded": len(responses),
        "failed": dict(failures),
        "wall_s": wall_s,
        "requests_per_s": len(responses) / wall_s if wall_s > 0 else None,
        "output_tokens_per_s": sum(tokens) / wall_s if wall_s > 0 and tokens else None,
        "output_tokens_mean": sum(tokens) / len(tokens) if tokens else None,
        "ttft_ms": distribution(ttft),
        "tpot_ms": distribution(tpot),
        "e2e_ms": distribution(e2e),
        "samples": {"ttft_ms": ttft, "tpot_ms": tpot, "e2e_ms": e2e},
    }


async def load_test(
    client: OpenAIChatClient,
    requests: Sequence[ChatRequest],
    *,
    concurrency: int,
    warmup: int = 1,
) -> dict[str, Any]:
    """Send ``warmup`` unmeasured requests, then all of ``requests`` with at most ``concurrency`` in flight."""
    for request in list(requests)[:warmup]:
        try:
            await client.complete(request, stream=True)
        except Exception:  # noqa: BLE001 - a failed warm-up shows up again, counted, in the measured run
            break
    responses: list[ChatResponse] = []
    failures: Counter[str] = Counter()

    def on_result(job: Job, outcome: ChatResponse | CallFailure) -> None:
        if isinstance(outcome, ChatResponse):
            responses.append(outcome)
        else:
            failures[outcome.error_class] += 1

    jobs = [Job(key=index, request=request) for index, request in enumerate(requests)]
    admission = Admission(None, None, concurrency, learn_limits=False)
    started = time.perf_counter()
    await dispatch(jobs, client, admission, RetryPolicy(max_attempts=1), on_result, stream=True)
    return summarise(responses, failures, time.perf_counter() - started, concurrency)


def run_load_test(
    base_url: str,
    api_key: str | None,
    requests: Sequence[ChatRequest],
    *,
    concurrency: int,
    warmup: int = 1,
    timeout_s: float = 600.0,
) -> dict[str, Any]:
    """Synchronous wrapper: one client for the whole test, closed at the end."""

    async def run() -> dict[str, Any]:
        async with OpenAIChatClient(
            base_url, api_key, timeout_s=timeout_s, max_connections=concurrency + 8
        ) as client:
            return await load_test(client, requests, concurrency=concurrency, warmup=warmup)

    return asyncio.run(run())
