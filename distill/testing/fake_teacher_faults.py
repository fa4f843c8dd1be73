"""The fake teacher's misbehaviour: server-side rate limits with OpenAI's headers, and injected faults.

Rate limits are token buckets like OpenAI's (capacity = the per-minute limit × ``burst_s`` / 60, refilled
continuously). A request is charged one request and its prompt plus completion tokens when it arrives; if
either bucket lacks it the answer is a 429 with ``retry-after`` set to when it would fit.

Faults are decided from a hash of (seed, request id, attempt number), not from a shared RNG, so the same
request meets the same fate on every run whatever the arrival order, and a retry is a fresh draw.
A request body may also carry ``"fake_fault": {"kind": ..., "times": N, "retry_after": s}`` to force a fault
on its first N attempts (tests use it to check each error class precisely).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

FAULT_KINDS = ("reset", "truncated", "error_500", "error_503", "slow")

# Forced kinds beyond plain status codes: what body and status each one answers with.
NAMED_ERRORS: dict[str, tuple[int, str, str]] = {
    "context_length": (400, "context_length_exceeded", "This model's maximum context length is 8192 tokens."),
    "content_filter": (
        400,
        "content_filter",
        "The response was filtered due to the prompt triggering the content management policy.",
    ),
    "quota": (
        429,
        "insufficient_quota",
        "You exceeded your current quota, please check your plan and billing details.",
    ),
    "bad_request": (400, "invalid_request_error", "Invalid request."),
    "not_found": (404, "model_not_found", "The model does not exist."),
}


def format_duration(seconds: float) -> str:
    """OpenAI's reset format: ``20ms``, ``1s``, ``6m0s``."""
    if seconds < 1:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    if seconds < 60:
        return f"{seconds:.3g}s"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m{rest:.0f}s"


class ServerBucket:
    __slots__ = ("capacity", "level", "limit", "rate", "stamp")

    def __init__(self, per_minute: float, burst_s: float, now: float) -> None:
        self.limit = per_minute
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate * burst_s)
        self.level = self.capacity
        self.stamp = now

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_for(self, amount: float) -> float:
        need = min(amount, self.capacity)
        return 0.0 if self.level >= need else (need - self.level) / self.rate

    def headers(self, kind: str) -> dict[str, str]:
        return {
            f"x-ratelimit-limit-{kind}": str(int(self.limit)),
            f"x-ratelimit-remaining-{kind}": str(max(0, int(self.level))),
            f"x-ratelimit-reset-{kind}": format_duration((self.capacity - self.level) / self.rate),
        }


class ServerLimits:
    """RPM and TPM enforcement for the whole server."""

    def __init__(self, rpm: float | None, tpm: float | None, burst_s: float, now: float) -> None:
        self.requests = ServerBucket(rpm, burst_s, now) if rpm else None
        self.tokens = ServerBucket(tpm, burst_s, now) if tpm else None

    def admit(self, tokens: int, now: float) -> float:
        """Charge the request and return 0, or charge nothing and return the seconds until it would fit."""
        wait = 0.0
        for bucket, amount in ((self.requests, 1), (self.tokens, tokens)):
            if bucket is not None:
                bucket.refill(now)
                wait = max(wait, bucket.wait_for(amount))
        if wait > 0:
            return wait
        if self.requests is not None:
            self.requests.level -= 1
        if self.tokens is not None:
            self.tokens.level -= tokens
        return 0.0

    def headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self.requests is not None:
            headers.update(self.requests.headers("requests"))
        if self.tokens is not None:
            headers.update(self.tokens.headers("tokens"))
        return headers


def unit_draw(*parts: object) -> float:
    """A uniform number in [0, 1) that depends only on ``parts``."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


@dataclass(frozen=True)
class FaultRates:
    reset: float = 0.0
    truncated: float = 0.0
    error_500: float = 0.0
    error_503: float = 0.0
    slow: float = 0.0

    def pick(self, seed: int, request_key: str, attempt: int) -> str | None:
        """Which random fault (if any) this attempt meets."""
        draw = unit_draw(seed, "fault", request_key, attempt)
        edge = 0.0
        for kind, rate in (
            ("reset", self.reset),
            ("truncated", self.truncated),
            ("error_500", self.error_500),
            ("error_503", self.error_503),
            ("slow", self.slow),
        ):
            edge += rate
            if draw < edge:
                return kind
        return None


def forced_fault(body: dict[str, Any], attempt: int) -> dict[str, Any] | None:
    """The body's ``fake_fault`` when it still applies to this (1-based) attempt."""
    fault = body.get("fake_fault")
    if fault is None:
        return None
    if not isinstance(fault, dict):
        fault = {"kind": fault}
    times = fault.get("times")
    if times is not None and attempt > int(times):
        return None
    return fault


def error_body(status: int, code: str, message: str) -> dict[str, Any]:
    kind = "invalid_request_error" if status < 500 else "server_error"
    if status == 429:
        kind = "rate_limit_exceeded" if code == "rate_limit_exceeded" else "insufficient_quota"
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}
