"""Why the engine keeps its own admission control instead of aiolimiter: the measurement.

``distill bench admission`` (needs ``aiolimiter``, in the ``dev`` extra). A simulated teacher
answers each request after 50 ms and reports ``usage``; every request reserves its prompt plus ``max_tokens``
before it is sent, as a client must (the answer's length is unknown until it arrives), and really uses far
less. Under a tokens-per-minute limit:

- aiolimiter can only take capacity, never give it back, so each request costs its whole reservation;
- the engine's :class:`~distill.engine.admission.Admission` corrects the charge from ``usage`` on release.

Printed: requests per minute and tokens really used per minute in the steady state (after the first
minute's burst), the share of the paid-for TPM each uses, what aiolimiter does with a reservation larger
than its per-period capacity, and the CPU time of one acquire/release pair for each.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from distill.engine.admission import Admission

TPM = 60_000
PROMPT_TOKENS = 200
MAX_TOKENS = 1024
USED_COMPLETION = 100  # what an answer really takes: the reservation is ~4x the usage
LATENCY_S = 0.05
CONCURRENCY = 64


async def _drive(
    acquire: Callable[[], Awaitable[None]], release: Callable[[], None], seconds: float
) -> list[float]:
    """Send simulated requests for ``seconds``; return the finish times."""
    finished: list[float] = []
    deadline = time.monotonic() + seconds

    async def worker() -> None:
        while time.monotonic() < deadline:
            await acquire()
            await asyncio.sleep(LATENCY_S)
            release()
            finished.append(time.monotonic())

    workers = [asyncio.create_task(worker()) for _ in range(CONCURRENCY)]
    await asyncio.sleep(seconds)
    for task in workers:
        task.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    return finished


def _steady(finished: list[float], started: float, warmup_s: float, seconds: float) -> dict[str, float]:
    window = [t for t in finished if t - started >= warmup_s]
    span = seconds - warmup_s
    per_minute = len(window) * 60.0 / span
    used = per_minute * (PROMPT_TOKENS + USED_COMPLETION)
    return {
        "requests_per_min": round(per_minute, 1),
        "tokens_used_per_min": round(used),
        "share_of_tpm_used": round(used / TPM, 3),
    }


async def engine_side(seconds: float, warmup_s: float) -> dict[str, float]:
    admission = Admission(None, TPM, CONCURRENCY)
    reserved = PROMPT_TOKENS + MAX_TOKENS
    started = time.monotonic()
    finished = await _drive(
        lambda: admission.acquire(reserved),
        lambda: admission.release(reserved, PROMPT_TOKENS + USED_COMPLETION),
        seconds,
    )
    return _steady(finished, started, warmup_s, seconds)


async def aiolimiter_side(seconds: float, warmup_s: float) -> dict[str, float]:
    from aiolimiter import AsyncLimiter

    limiter = AsyncLimiter(TPM, 60)
    slots = asyncio.Semaphore(CONCURRENCY)
    reserved = PROMPT_TOKENS + MAX_TOKENS

    async def acquire() -> None:
        await slots.acquire()
        await limiter.acquire(reserved)

    started = time.monotonic()
    finished = await _drive(acquire, slots.release, seconds)
    return _steady(finished, started, warmup_s, seconds)


def larger_than_capacity() -> str:
    """What aiolimiter does with a request bigger than one period's capacity (1,000 tokens a second)."""
    from aiolimiter import AsyncLimiter

    async def attempt() -> str:
        try:
            await AsyncLimiter(TPM / 60, 1).acquire(PROMPT_TOKENS + MAX_TOKENS)
        except ValueError as exc:
            return f"ValueError: {exc}"
        return "admitted"

    return asyncio.run(attempt())


def cpu_per_pair(pairs: int) -> dict[str, float]:
    """CPU microseconds of one acquire + release with limits that never bind."""
    from aiolimiter import AsyncLimiter

    async def engine() -> None:
        admission = Admission(1e12, 1e15, CONCURRENCY)
        for _ in range(pairs):
            await admission.acquire(1224)
            admission.release(1224, 300)

    async def limiter() -> None:
        tokens = AsyncLimiter(1e15, 60)
        requests = AsyncLimiter(1e12, 60)
        for _ in range(pairs):
            await requests.acquire()
            await tokens.acquire(1224)

    result = {}
    for name, scenario in (("engine", engine), ("aiolimiter", limiter)):
        started = time.process_time()
        asyncio.run(scenario())
        result[name] = round((time.process_time() - started) / pairs * 1e6, 2)
    return result


def run(seconds: float, warmup_s: float, pairs: int) -> dict[str, Any]:
    return {
        "setup": {
            "tpm": TPM,
            "reserved_per_request": PROMPT_TOKENS + MAX_TOKENS,
            "used_per_request": PROMPT_TOKENS + USED_COMPLETION,
            "latency_s": LATENCY_S,
            "concurrency": CONCURRENCY,
            "measured_s": seconds - warmup_s,
        },
        "engine": asyncio.run(engine_side(seconds, warmup_s)),
        "aiolimiter": asyncio.run(aiolimiter_side(seconds, warmup_s)),
        "aiolimiter_request_above_capacity": larger_than_capacity(),
        "cpu_us_per_acquire_release": cpu_per_pair(pairs),
    }


class AdmissionBenchConfig(BaseModel):
    """``distill bench admission``'s settings."""

    model_config = ConfigDict(extra="forbid")

    seconds: float = Field(default=90.0, gt=0, description="run length of each side")
    warmup: float = Field(default=65.0, ge=0, description="seconds left out (the first minute's burst)")
    pairs: int = Field(default=200_000, ge=1, description="acquire/release pairs timed for CPU")


def bench_admission(config: AdmissionBenchConfig) -> int:
    """Both sides, printed as JSON."""
    print(json.dumps(run(config.seconds, config.warmup, config.pairs), indent=2))
    return 0
