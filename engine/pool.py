"""Where a request goes: the one endpoint of a run, or the endpoint of a pool that has room for it now.

A *lane* is one endpoint with its own client and admission control (its RPM/TPM buckets, its in-flight
slots, limits learnt from its own headers) and its own figures: requests, answers, errors by class, tokens.

A pool (several lanes: replicas, keys, providers of one model) sends each request to a healthy lane that can
take it now, the least loaded for its weight (in flight / weight); when none can, it sleeps until the
soonest one could (a bucket refilling, a slot freed, a lane's probe time), without polling. Each lane has a
circuit breaker: a failure that is the endpoint's, not the request's (connection refused, a refused key, no
quota, a wrong model or path, a redirect; three 5xx or timeouts in a row) takes it out for 5 s, doubling up
to 60 s each time. When the time is up, ``GET /models`` probes it (no paid request is risked on a lane that
is out); an answer brings it back, a failure takes it out again. Taken out four times without one answered
request in between, it is dead. Work that failed on a lane is retried on the others at once; only when
every lane is dead does the run stop (``endpoints_down``), resumable.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from distill.engine.admission import Admission
from distill.engine.client import ChatClient
from distill.engine.errors import (
    AUTH,
    CONNECTION,
    ENDPOINTS_DOWN,
    NOT_FOUND,
    QUOTA_EXCEEDED,
    REDIRECT,
    SERVER_ERROR,
    TIMEOUT,
    CallError,
)
from distill.engine.types import ChatResponse

from distill.endpoint import Endpoint

UP, OUT, DEAD = "up", "out", "dead"
# The endpoint is broken, whatever the request: out at once. In a pool, a request that met one of these is
# sent to another endpoint without counting against its retries (the endpoints dying bounds it).
HARD_FAILURES = frozenset({CONNECTION, AUTH, QUOTA_EXCEEDED, NOT_FOUND, REDIRECT})
# Could be one unlucky request: out after this many in a row.
_SOFT_FAILURES = frozenset({SERVER_ERROR, TIMEOUT})
_SOFT_IN_A_ROW = 3
_FIRST_OUT_S = 5.0
_LONGEST_OUT_S = 60.0
_DEAD_AFTER_TRIPS = 4


class Lane:
    """One endpoint: client, admission control, health and figures."""

    def __init__(self, endpoint: Endpoint, client: ChatClient, admission: Admission) -> None:
        self.endpoint = endpoint
        self.name = endpoint.name
        self.client = client
        self.admission = admission
        self.weight = endpoint.weight
        self.on_change: Any = None  # set by a pool: called when this lane may admit again
        # figures
        self.sent = 0
        self.ok = 0
        self.errors: Counter[str] = Counter()
        self.prompt_tokens = 0
        self.completion_tokens = 0
        # health
        self.state = UP
        self.streak = 0  # soft failures in a row
        self.trips = 0  # times taken out since the last success
        self.out_until = 0.0
        self.probe: asyncio.Task | None = None
        self.last_error: str | None = None

    def release(self, reserved_tokens: int, used_tokens: int | None) -> None:
        self.admission.release(reserved_tokens, used_tokens)
        if self.on_change is not None:
            self.on_change()

    def succeeded(self, response: ChatResponse) -> None:
        self.ok += 1
        usage = response.usage
        if usage is not None:
            self.prompt_tokens += usage.prompt_tokens
            self.completion_tokens += usage.completion_tokens
        if self.state == UP and (self.streak or self.trips):
            self.streak, self.trips = 0, 0

    def failed(self, error: CallError) -> bool:
        """Count ``error``; True when it was the endpoint's fault (the breaker may have taken it out)."""
        self.errors[error.error_class] += 1
        lane_failure = error.error_class in HARD_FAILURES or error.error_class in _SOFT_FAILURES
        if self.state != UP:
            return lane_failure  # sent before the lane went out: the breaker has already acted on it
        if error.error_class in HARD_FAILURES:
            self.trip(error)
        elif error.error_class in _SOFT_FAILURES:
            self.streak += 1
            if self.streak >= _SOFT_IN_A_ROW:
                self.trip(error)
        else:
            self.streak = 0
        return lane_failure

    async def run_probe(self) -> None:
        """``GET /models`` of a lane that is out: back in on an answer, out again (longer) on a failure."""
        try:
            await self.client.list_models()
        except CallError as error:
            self.trip(error)
        else:
            self.state = UP  # `trips` stays until a request is answered: a refused key is found again
            if self.on_change is not None:
                self.on_change()
        finally:
            self.probe = None

    def trip(self, error: CallError) -> None:
        self.streak = 0
        self.trips += 1
        self.last_error = f"{error.error_class}: {error.message}"
        if self.trips >= _DEAD_AFTER_TRIPS:
            self.state = DEAD
        else:
            self.state = OUT
            self.out_until = time.monotonic() + min(_LONGEST_OUT_S, _FIRST_OUT_S * 2 ** (self.trips - 1))
        if self.on_change is not None:
            self.on_change()

    def figures(self) -> dict[str, Any]:
        """What this endpoint did: for progress displays and the summary (never the key)."""
        price = self.endpoint.price
        spend = (
            (self.prompt_tokens * price.input_per_million + self.completion_tokens * price.output_per_million)
            / 1_000_000
            if price is not None
            else None
        )
        snapshot = self.admission.snapshot()
        return {
            "endpoint": self.name,
            "state": self.state,
            "requests": self.sent,
            "answers": self.ok,
            "errors": dict(self.errors),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "spend": None if spend is None else round(spend, 6),
            "in_flight": snapshot["in_flight"],
            "rpm": snapshot["rpm"],
            "last_error": self.last_error,
        }


class OneEndpoint:
    """The lanes of a run with one endpoint: every request goes to it, waiting in its admission queue."""

    pooled = False

    def __init__(self, lane: Lane) -> None:
        self.lane = lane
        self.single: Lane | None = lane  # the dispatcher's fast path: no choice to make
        self.lanes = [lane]

    @property
    def max_in_flight(self) -> int:
        return self.lane.admission.max_in_flight  # callers that measure change it between load points

    async def acquire(self, reserved_tokens: int) -> Lane:
        await self.lane.admission.acquire(reserved_tokens)
        return self.lane

    def snapshot(self) -> dict[str, Any]:
        return self.lane.admission.snapshot()

    async def close(self) -> None:
        """Nothing runs in the background for one endpoint."""


class Pool:
    """Several lanes sharing a run (see the module docstring)."""

    pooled = True
    single: Lane | None = None

    def __init__(self, lanes: Sequence[Lane]) -> None:
        if not lanes:
            raise ValueError("a pool needs at least one endpoint")
        self.lanes = list(lanes)
        self.max_in_flight = sum(lane.admission.max_in_flight for lane in self.lanes)
        self._changed: asyncio.Event | None = None
        for lane in self.lanes:
            lane.on_change = self._wake

    def _wake(self) -> None:
        if self._changed is not None:
            self._changed.set()

    async def acquire(self, reserved_tokens: int) -> Lane:
        """Take room on the best lane that has it now, waiting for the soonest one; CallError
        ``endpoints_down`` when every lane is dead."""
        if self._changed is None:
            self._changed = asyncio.Event()
        while True:
            now = time.monotonic()
            best: Lane | None = None
            best_load = math.inf
            soonest = math.inf
            alive = False
            for lane in self.lanes:
                if lane.state == DEAD:
                    continue
                alive = True
                if lane.state == OUT:
                    if lane.out_until > now:
                        soonest = min(soonest, lane.out_until - now)
                    elif lane.probe is None:
                        lane.probe = asyncio.get_running_loop().create_task(lane.run_probe())
                    continue
                wait = lane.admission.ready_in(reserved_tokens)
                if wait > 0:
                    soonest = min(soonest, wait)
                    continue
                load = lane.admission.in_flight / lane.weight
                if load < best_load:
                    best, best_load = lane, load
            if best is not None:
                best.admission.take(reserved_tokens)
                return best
            if not alive:
                raise CallError(ENDPOINTS_DOWN, self._down_message())
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), None if math.isinf(soonest) else soonest)
            except TimeoutError:
                pass

    def _down_message(self) -> str:
        return "every endpoint of the pool failed: " + "; ".join(
            f"{lane.name}: {lane.last_error}" for lane in self.lanes
        )

    async def close(self) -> None:
        for lane in self.lanes:
            if lane.probe is not None:
                lane.probe.cancel()

    def snapshot(self) -> dict[str, Any]:
        """The lanes' admission figures added up, and each lane's own."""
        snapshots = [lane.admission.snapshot() for lane in self.lanes]

        def total(key: str) -> float | None:
            values = [s["limits"][key] for s in snapshots]
            return None if any(v is None for v in values) else sum(values)

        return {
            "rpm": round(sum(s["rpm"] for s in snapshots), 1),
            "tpm": round(sum(s["tpm"] for s in snapshots), 1),
            "in_flight": sum(s["in_flight"] for s in snapshots),
            "waiting": sum(s["waiting"] for s in snapshots),
            "paused_s": max(s["paused_s"] for s in snapshots),
            "pauses": sum(s["pauses"] for s in snapshots),
            "limits": {"rpm": total("rpm"), "tpm": total("tpm"), "max_in_flight": self.max_in_flight},
            "endpoints": [lane.figures() for lane in self.lanes],
        }
