"""A streaming load test of one OpenAI-compatible endpoint: TTFT, TPOT, end-to-end latency, req/s, tok/s.

Requests go through an engine session on the endpoint with ``stream=True`` (so time to first token is measured
where the client sees it) at a fixed concurrency, without retries: a failure is counted,
not hidden behind a second attempt. Teacher and student are measured by this same code on the same items.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from distill.engine.retry import RetryPolicy
from distill.engine.session import EndpointSession, open_session
from distill.engine.types import CallFailure, ChatRequest, ChatResponse, Job

from distill.endpoint import Endpoint


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
    session: EndpointSession,
    requests: Sequence[ChatRequest],
    *,
    warmup: int = 1,
) -> dict[str, Any]:
    """Send ``warmup`` unmeasured requests, then all of ``requests`` at the session's concurrency."""
    for request in list(requests)[:warmup]:
        try:
            await session.complete(request, stream=True)
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
    started = time.perf_counter()
    await session.run(jobs, on_result, stream=True)
    wall_s = time.perf_counter() - started
    return summarise(responses, failures, wall_s, session.admission.max_in_flight)


def run_load_test(
    endpoint: Endpoint,
    requests: Sequence[ChatRequest],
    *,
    concurrency: int,
    warmup: int = 1,
) -> dict[str, Any]:
    """Synchronous wrapper: one session on ``endpoint`` for the whole test, at ``concurrency``, no retries."""

    async def run() -> dict[str, Any]:
        async with open_session(
            endpoint, concurrency=concurrency, retry=RetryPolicy(max_attempts=1), learn_limits=False
        ) as session:
            return await load_test(session, requests, warmup=warmup)

    return asyncio.run(run())
