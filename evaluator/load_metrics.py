"""The figures of one load point, from per-request timings: the metrics `vllm bench serve` reports, defined as it does.

Per request (streamed): TTFT = time to the first content token; E2EL = the whole request, to the end of the
stream; TPOT = (E2EL − TTFT) / (output tokens − 1), vLLM's formula, with the server's token count (``usage``); ITL
= the gaps between consecutive chunks that carry text. TPOT is not taken from the last *text* chunk: a token that
streams no text (a special token written after end-of-sequence under ``ignore_eos``, part of a multi-byte
character cut off by ``max_tokens``) is still a token the server spent a step on, so ending the span at the last
text chunk would make TPOT too small whenever an answer ends in such tokens. Per point:
completed and failed requests, request throughput, output and total (prompt + output) token throughput, each
latency at p50/p90/p95/p99 with mean and std, and goodput — completed requests per second that met every
configured target (TTFT, TPOT, E2EL; a one-token answer has TPOT 0, as in vLLM). Percentiles interpolate
linearly between closest ranks (numpy's default), std is the population std (numpy's default), so a point
reads the same here and in vLLM's output.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

PERCENTILES = (50, 90, 95, 99)
LATENCIES = ("ttft_ms", "tpot_ms", "itl_ms", "e2el_ms")


class LatencyTargets(BaseModel):
    """Service-level targets a request must all meet to count towards goodput (null: no target on that metric)."""

    model_config = ConfigDict(extra="forbid")

    ttft_ms: float | None = Field(default=None, gt=0, description="time to first token, ms")
    tpot_ms: float | None = Field(default=None, gt=0, description="time per output token after the first, ms")
    e2el_ms: float | None = Field(default=None, gt=0, description="end-to-end latency of one request, ms")
    attainment: float = Field(
        default=0.9,
        gt=0,
        le=1,
        description="the knee: the highest load where at least this share of requests meets the targets",
    )

    def met_by(self, timing: RequestTiming) -> bool:
        if not timing.ok:
            return False
        checks = (
            (self.ttft_ms, timing.ttft_ms),
            (self.tpot_ms, timing.tpot_ms or 0.0),  # one-token answers: TPOT 0, as vLLM counts them
            (self.e2el_ms, timing.e2el_ms),
        )
        return all(target is None or (value is not None and value <= target) for target, value in checks)

    def describe(self) -> str:
        parts = [
            f"{name.removesuffix('_ms').upper()} ≤ {value:g} ms"
            for name, value in (
                ("ttft_ms", self.ttft_ms),
                ("tpot_ms", self.tpot_ms),
                ("e2el_ms", self.e2el_ms),
            )
            if value is not None
        ]
        return ", ".join(parts) or "none"


@dataclass(frozen=True, slots=True)
class RequestTiming:
    """One measured request: its timings (ms from the moment it was sent) and token counts, or its failure."""

    ok: bool
    e2el_ms: float
    ttft_ms: float | None = None
    itl_ms: tuple[float, ...] = ()
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    error_class: str | None = None

    @property
    def tpot_ms(self) -> float | None:
        """Mean time per output token after the first: (E2EL − TTFT) / (tokens − 1), as vLLM computes it."""
        if self.ttft_ms is None or not self.output_tokens or self.output_tokens < 2:
            return None
        return (self.e2el_ms - self.ttft_ms) / (self.output_tokens - 1)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0–100) with linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def distribution(values: Sequence[float]) -> dict[str, float | None]:
    """mean, std (population) and p50/p90/p95/p99; None throughout when there is no value."""
    if not values:
        return {"mean": None, "std": None, **{f"p{q}": None for q in PERCENTILES}}
    mean = sum(values) / len(values)
    std = math.sqrt(sum((value - mean) ** 2 for value in values) / len(values))
    return {"mean": mean, "std": std, **{f"p{q}": percentile(values, q) for q in PERCENTILES}}


@dataclass
class PointResult:
    """Everything measured at one load point, before it is summarised."""

    timings: list[RequestTiming] = field(default_factory=list)
    wall_s: float = 0.0


def summarise_point(result: PointResult, targets: LatencyTargets, *, samples: bool = False) -> dict[str, Any]:
    """The figures of one point. ``samples`` keeps the raw per-request values (the report's box plots)."""
    done = [t for t in result.timings if t.ok]
    failed = Counter(t.error_class or "unknown" for t in result.timings if not t.ok)
    wall = result.wall_s
    output_tokens = sum(t.output_tokens or 0 for t in done)
    prompt_tokens = sum(t.prompt_tokens or 0 for t in done)
    values = {
        "ttft_ms": [t.ttft_ms for t in done if t.ttft_ms is not None],
        "tpot_ms": [t.tpot_ms for t in done if t.tpot_ms is not None],
        "itl_ms": [gap for t in done for gap in t.itl_ms],
        "e2el_ms": [t.e2el_ms for t in done],
    }
    good = sum(targets.met_by(t) for t in result.timings)

    def per_second(count: float) -> float | None:
        return count / wall if wall > 0 else None

    summary: dict[str, Any] = {
        "requests": len(result.timings),
        "completed": len(done),
        "failed": sum(failed.values()),
        "failures": dict(failed),
        "wall_s": wall,
        "request_throughput": per_second(len(done)),
        "output_token_throughput": per_second(output_tokens),
        "total_token_throughput": per_second(output_tokens + prompt_tokens),
        "output_tokens_mean": output_tokens / len(done) if done else None,
        "prompt_tokens_mean": prompt_tokens / len(done) if done else None,
        "good": good,
        "goodput": per_second(good),
        "attainment": good / len(result.timings) if result.timings else None,
        **{name: distribution(series) for name, series in values.items()},
    }
    if samples:
        summary["samples"] = {name: values[name] for name in ("ttft_ms", "tpot_ms", "e2el_ms")}
    return summary


def knee(points: Sequence[dict[str, Any]], targets: LatencyTargets) -> int | None:
    """Index of the highest-load point whose attainment meets ``targets.attainment`` (points in load order)."""
    best = None
    for index, point in enumerate(points):
        attainment = point.get("attainment")
        if attainment is not None and attainment >= targets.attainment and point.get("completed"):
            best = index
    return best
