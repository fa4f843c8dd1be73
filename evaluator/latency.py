"""Load generation against one OpenAI-compatible endpoint: the points of a sweep, measured over streaming HTTP.

Requests go through an engine session on the endpoint (its client, admission and dispatcher) with
``stream=True``, so time to first token is measured where the client sees it, and without retries: a failure
is counted, not hidden behind a second attempt. Two kinds of load, as `vllm bench serve` offers them:

- **concurrency** ``C``: a closed loop — ``C`` requests in flight, the next sent as soon as one finishes;
- **rate** ``R``: an open loop — requests sent at Poisson arrivals of ``R`` per second (exponential gaps, seeded),
  whether or not earlier ones have finished (up to a cap on requests in flight).

A point sends a fixed number of requests, or keeps sending for a duration and then waits for what is in flight.
One session serves the whole sweep (connections are reused from point to point), and ``warmup`` requests go
first, unmeasured. Teacher and student are measured by this same code with the same prompts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import random
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any, Literal

from distill.engine.retry import RetryPolicy
from distill.engine.session import EndpointSession, open_session
from distill.engine.types import CallFailure, ChatRequest, ChatResponse, Job
from distill.evaluator.load_metrics import PointResult, RequestTiming
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from distill.endpoint import Endpoint

# Requests in flight at most in a rate point (the open loop's cap, like `vllm bench serve --max-concurrency`).
DEFAULT_RATE_CAP = 1024


class LoadPoint(BaseModel):
    """One level of load: ``value`` requests in flight (concurrency) or arriving per second (rate)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["concurrency", "rate"]
    value: float = Field(gt=0)

    @property
    def label(self) -> str:
        return f"concurrency {self.value:g}" if self.kind == "concurrency" else f"{self.value:g} req/s"


DEFAULT_CONCURRENCY = (1, 2, 4, 8, 16, 32)


class LoadProfile(BaseModel):
    """Which load points a sweep visits and how much traffic each point gets."""

    model_config = ConfigDict(extra="forbid")

    profile: Literal["concurrency", "rate"] = Field(
        default="concurrency",
        description="concurrency: N requests in flight (closed loop); rate: Poisson arrivals per second",
    )
    concurrency: list[int] = Field(
        default_factory=lambda: list(DEFAULT_CONCURRENCY),
        min_length=1,
        description="requests in flight, one point per level (profile: concurrency)",
    )
    rates: list[float] = Field(
        default_factory=lambda: [0.5, 1.0, 2.0, 4.0, 8.0],
        min_length=1,
        description="requests per second, one point per rate (profile: rate)",
    )
    requests: int | None = Field(default=32, ge=1, description="requests per point (null: use duration_s)")
    waves: float | None = Field(
        default=None,
        gt=0,
        description="a concurrency point sends at least waves × its concurrency requests (null: requests only)",
    )
    duration_s: float | None = Field(default=None, gt=0, description="seconds of sending per point")
    warmup: int = Field(default=2, ge=0, description="unmeasured requests before the first point")
    rate_cap: int = Field(default=DEFAULT_RATE_CAP, ge=1, description="requests in flight at most (rate)")
    seed: int = Field(default=0, description="seed of the Poisson arrival times")

    @field_validator("concurrency", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("concurrency")
    @classmethod
    def _positive_levels(cls, value: list[int]) -> list[int]:
        if any(level < 1 for level in value):
            raise ValueError("every concurrency level must be at least 1")
        return sorted(set(value))

    @field_validator("rates")
    @classmethod
    def _positive_rates(cls, value: list[float]) -> list[float]:
        if any(rate <= 0 for rate in value):
            raise ValueError("every request rate must be above 0 (requests per second)")
        return sorted(set(value))

    @model_validator(mode="after")
    def _count_or_duration(self) -> LoadProfile:
        if (self.requests is None) == (self.duration_s is None):
            raise ValueError(
                "give requests (per point) or duration_s, exactly one of them (set the other to null)"
            )
        return self

    def points(self) -> list[LoadPoint]:
        if self.profile == "concurrency":
            return [LoadPoint(kind="concurrency", value=level) for level in self.concurrency]
        return [LoadPoint(kind="rate", value=rate) for rate in self.rates]

    def requests_at(self, point: LoadPoint) -> int | None:
        """How many requests ``point`` sends (None: it sends for ``duration_s``)."""
        if self.requests is None:
            return None
        if self.waves is not None and point.kind == "concurrency":
            return max(self.requests, math.ceil(self.waves * point.value))
        return self.requests

    def max_in_flight(self) -> int:
        return max(self.concurrency) if self.profile == "concurrency" else self.rate_cap


def timing_of(outcome: ChatResponse | CallFailure) -> RequestTiming:
    """What one finished request tells the metrics."""
    if isinstance(outcome, CallFailure):
        return RequestTiming(ok=False, e2el_ms=0.0, error_class=outcome.error_class)
    times = outcome.chunk_times_ms or ()
    usage = outcome.usage
    return RequestTiming(
        ok=True,
        e2el_ms=outcome.latency_ms,
        ttft_ms=outcome.ttft_ms,
        itl_ms=tuple(later - earlier for earlier, later in zip(times, times[1:], strict=False)),
        prompt_tokens=usage.prompt_tokens if usage else None,
        output_tokens=usage.completion_tokens if usage else len(times) or None,
    )


def _numbered(requests: Sequence[ChatRequest], tag: str) -> Callable[[int], ChatRequest]:
    """Request ``i`` of a point: the prompts in turn, each with its own request id."""

    def make(index: int) -> ChatRequest:
        base = requests[index % len(requests)]
        return dataclasses.replace(base, request_id=f"{tag}-{index}")

    return make


def _closed_loop(make: Callable[[int], ChatRequest], count: int | None, until: float | None) -> Iterator[Job]:
    """Jobs pulled by the dispatcher whenever a slot frees up: ``count`` of them, or until ``until``."""
    index = 0
    while (count is None or index < count) and (until is None or time.perf_counter() < until):
        yield Job(key=index, request=make(index))
        index += 1


async def _poisson_arrivals(
    make: Callable[[int], ChatRequest], rate: float, count: int | None, until: float | None, seed: int
) -> AsyncIterator[Job]:
    """Jobs released at Poisson arrival times of ``rate`` per second, on an absolute schedule (no drift)."""
    rng = random.Random(seed)
    start = time.perf_counter()
    due = 0.0
    index = 0
    while count is None or index < count:
        delay = start + due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if until is not None and time.perf_counter() >= until:
            return
        yield Job(key=index, request=make(index))
        index += 1
        due += rng.expovariate(rate)


async def measure_point(
    session: EndpointSession,
    requests: Sequence[ChatRequest],
    point: LoadPoint,
    *,
    count: int | None = None,
    duration_s: float | None = None,
    rate_cap: int = DEFAULT_RATE_CAP,
    seed: int = 0,
    tag: str = "bench",
) -> PointResult:
    """Send one point's load (``count`` requests, or for ``duration_s``) and time every request."""
    if (count is None) == (duration_s is None):
        raise ValueError("give a request count or a duration for a load point, not both")
    result = PointResult()

    def on_result(job: Job, outcome: ChatResponse | CallFailure) -> None:
        result.timings.append(timing_of(outcome))

    make = _numbered(requests, f"{tag}-{point.kind}-{point.value:g}")
    session.admission.max_in_flight = int(point.value) if point.kind == "concurrency" else rate_cap
    started = time.perf_counter()
    until = started + duration_s if duration_s is not None else None
    jobs = (
        _closed_loop(make, count, until)
        if point.kind == "concurrency"
        else _poisson_arrivals(make, point.value, count, until, seed)
    )
    await session.run(jobs, on_result, stream=True)
    result.wall_s = time.perf_counter() - started
    return result


async def warm_up(session: EndpointSession, requests: Sequence[ChatRequest], count: int) -> None:
    """``count`` unmeasured requests (connections, server caches, lazy initialisation), a few at a time."""
    if count <= 0:
        return
    session.admission.max_in_flight = min(count, 4)
    make = _numbered(requests, "warmup")
    jobs = (Job(key=index, request=make(index)) for index in range(count))
    await session.run(jobs, lambda job, outcome: None, stream=True)


def measuring_session(endpoint: Endpoint, max_in_flight: int):
    """A session that measures rather than produces: no retries, no limits learnt from headers."""
    return open_session(
        endpoint, concurrency=max_in_flight, retry=RetryPolicy(max_attempts=1), learn_limits=False
    )
