"""Admission control: who may send a request now. Separate from retries, shared by every request in a run.

A request needs three things at once: one unit of the requests-per-minute bucket, its reserved tokens
(prompt + max_tokens) from the tokens-per-minute bucket, and a free in-flight slot. Waiters queue in FIFO
order and sleep on a single timer set to the moment the head of the queue can go (computed from the refill
rates, as aiolimiter does); nothing polls. A 429 pauses everyone, not just the request that got it.

Why not aiolimiter: it can only take capacity, never give it back, so it cannot "reserve max_tokens, then
correct from the response's usage", and it refuses amounts above its capacity. Our buckets may go into debt:
a reservation larger than the whole bucket waits until the bucket is full, then takes everything and leaves
a debt that refills at the normal rate. Clamping the wait (not the charge) is what keeps a huge
``max_tokens`` from deadlocking while the long-run rate still matches the limit.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections import deque
from collections.abc import Mapping

from distill.errors import UserError

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_WINDOW_S = 60


def parse_reset(value: str) -> float | None:
    """OpenAI's reset durations ("1s", "6m0s", "20ms", "1h2m3.5s") or plain seconds → seconds."""
    value = value.strip()
    try:
        return float(value)
    except ValueError:
        pass
    parts = _DURATION_PART.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        return None
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)


class LimitError(UserError):
    """A request that the configured (or learnt) limits can never admit in reasonable time."""

    def __init__(self, reserved_tokens: int, tpm: float, *, learnt: bool) -> None:
        where = "learnt from the server's x-ratelimit headers" if learnt else "teacher.tpm"
        super().__init__(
            f"one request reserves {reserved_tokens:,} tokens (estimated prompt + max_tokens) but the tokens-per-"
            f"minute limit is {tpm:,.0f} ({where}): it could never be admitted; raise tpm above the largest "
            "request or lower max_tokens"
        )


class TokenBucket:
    """A bucket of ``capacity`` units refilled at ``per_minute / 60`` a second; its level may go negative."""

    __slots__ = ("capacity", "level", "rate", "stamp")

    def __init__(self, per_minute: float, burst_s: float, now: float, *, min_capacity: float = 1.0) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(self.rate * burst_s, min_capacity)
        self.level = self.capacity
        self.stamp = now

    def refill(self, now: float) -> None:
        if now > self.stamp:
            self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
            self.stamp = now

    def wait_for(self, amount: float, now: float) -> float:
        """Seconds until ``amount`` (clamped to the capacity) is available; 0 if it is now."""
        self.refill(now)
        need = min(amount, self.capacity)
        return 0.0 if self.level >= need else (need - self.level) / self.rate

    def retune(self, per_minute: float, burst_s: float, now: float) -> None:
        self.refill(now)
        self.rate = per_minute / 60.0
        self.capacity = max(self.rate * burst_s, 1.0)
        self.level = min(self.level, self.capacity)


class _SlidingCounter:
    """Sums over the last 60 s in one-second slots: live RPM/TPM for the progress display."""

    __slots__ = ("seconds", "slots", "started")

    def __init__(self, now: float) -> None:
        self.slots = [0.0] * _WINDOW_S
        self.seconds = [0] * _WINDOW_S
        self.started = now

    def add(self, amount: float, now: float) -> None:
        second = int(now)
        index = second % _WINDOW_S
        if self.seconds[index] != second:
            self.seconds[index] = second
            self.slots[index] = 0.0
        self.slots[index] += amount

    def per_minute(self, now: float) -> float:
        second = int(now)
        total = sum(v for s, v in zip(self.seconds, self.slots, strict=True) if second - s < _WINDOW_S)
        span = min(float(_WINDOW_S), max(1.0, now - self.started))
        return total * _WINDOW_S / span


class Admission:
    """Gatekeeper for one endpoint. ``rpm``/``tpm`` None means no limit unless learnt from headers."""

    def __init__(
        self,
        rpm: float | None,
        tpm: float | None,
        max_in_flight: int,
        *,
        burst_s: float = 1.0,
        headroom: float = 0.02,
        learn_limits: bool = True,
        clock=time.monotonic,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        if not 0 <= headroom < 1:
            raise ValueError("headroom must be in [0, 1)")
        self.max_in_flight = max_in_flight
        self.learn_limits = learn_limits
        self._burst_s = burst_s
        # Pacing at exactly the server's rate turns every bit of network jitter into a 429; a couple of
        # percent under it absorbs the jitter for a negligible loss of throughput.
        self._pace = 1.0 - headroom
        self._clock = clock
        now = clock()
        self._configured = {"rpm": rpm, "tpm": tpm}
        self._learnt: dict[str, float | None] = {"rpm": None, "tpm": None}
        self._limit: dict[str, float | None] = {"rpm": rpm, "tpm": tpm}
        self._requests = TokenBucket(rpm * self._pace, burst_s, now) if rpm else None
        self._tokens = TokenBucket(tpm * self._pace, burst_s, now) if tpm else None
        self._paused_until = 0.0
        self.in_flight = 0
        self._waiters: deque[tuple[asyncio.Future[None], int]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._sent = _SlidingCounter(now)
        self._used = _SlidingCounter(now)
        self._server: dict[str, float] = {}
        self.pauses = 0

    # -- admission ------------------------------------------------------------------------------------

    def _wait_for(self, reserved_tokens: int, now: float) -> float:
        wait = self._paused_until - now
        if self._requests is not None:
            wait = max(wait, self._requests.wait_for(1, now))
        if self._tokens is not None and reserved_tokens:
            wait = max(wait, self._tokens.wait_for(reserved_tokens, now))
        return wait

    def _take(self, reserved_tokens: int, now: float) -> None:
        self.in_flight += 1
        if self._requests is not None:
            self._requests.level -= 1
        if self._tokens is not None:
            self._tokens.level -= reserved_tokens
        self._sent.add(1, now)

    def _check_fits(self, reserved_tokens: int) -> None:
        tpm = self._limit["tpm"]
        if tpm is not None and reserved_tokens > tpm:
            raise LimitError(reserved_tokens, tpm, learnt=self._learnt["tpm"] == tpm)

    def ready_in(self, reserved_tokens: int) -> float:
        """Seconds until a request could be taken without waiting (0: now; inf: every slot is in use).

        For a pool choosing among endpoints; :meth:`take` then takes it. LimitError as for :meth:`acquire`.
        """
        self._check_fits(reserved_tokens)
        if self._waiters or self.in_flight >= self.max_in_flight:
            return math.inf
        return max(0.0, self._wait_for(reserved_tokens, self._clock()))

    def take(self, reserved_tokens: int) -> None:
        """Take a request that :meth:`ready_in` said could go now."""
        self._take(reserved_tokens, self._clock())

    async def acquire(self, reserved_tokens: int = 0) -> None:
        """Wait for one request, ``reserved_tokens`` tokens and an in-flight slot, then take them.

        A request that needs more tokens than the whole per-minute limit could only ever go out after
        minutes of debt: that is refused at once (:class:`LimitError`) instead of waiting silently.
        """
        self._check_fits(reserved_tokens)
        now = self._clock()
        if (
            not self._waiters
            and self.in_flight < self.max_in_flight
            and self._wait_for(reserved_tokens, now) <= 0
        ):
            self._take(reserved_tokens, now)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((future, reserved_tokens))
        self._wake()
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                # Admitted in the same tick as the cancel: hand the capacity back.
                self.release(reserved_tokens, 0)
            else:
                self._wake()  # we may have been the head of the queue
            raise

    def _wake(self) -> None:
        """Admit every waiter that can go now, in order; arm one timer for the next one."""
        waiters = self._waiters
        while waiters:
            future, reserved = waiters[0]
            if future.done():  # cancelled while waiting
                waiters.popleft()
                continue
            if self.in_flight >= self.max_in_flight:
                return  # release() calls us again
            now = self._clock()
            wait = self._wait_for(reserved, now)
            if wait > 0:
                self._arm(wait)
                return
            waiters.popleft()
            self._take(reserved, now)
            future.set_result(None)

    def _arm(self, wait: float) -> None:
        loop = asyncio.get_running_loop()
        at = loop.time() + wait
        if self._timer is not None:
            if self._timer_at <= at + 1e-4 and not self._timer.cancelled():
                return  # an earlier (or equal) wake-up is already set
            self._timer.cancel()
        self._timer_at = at
        self._timer = loop.call_at(at, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._wake()

    def release(self, reserved_tokens: int = 0, used_tokens: int | None = None) -> None:
        """Free the slot; correct the token bucket by what the call really used (None: keep the charge)."""
        self.in_flight -= 1
        now = self._clock()
        if used_tokens is not None:
            if self._tokens is not None:
                self._tokens.refill(now)
                self._tokens.level = min(
                    self._tokens.capacity, self._tokens.level + reserved_tokens - used_tokens
                )
            self._used.add(used_tokens, now)
        if self._waiters:
            self._wake()

    def pause(self, seconds: float) -> None:
        """Nobody is admitted for ``seconds`` (a 429's Retry-After), and no burst follows the pause."""
        now = self._clock()
        if now + seconds > self._paused_until:
            self._paused_until = now + seconds
            self.pauses += 1
        if self._requests is not None:
            self._requests.refill(now)
            self._requests.level = min(self._requests.level, 0.0)
        if self._waiters:
            self._wake()

    # -- learning from x-ratelimit-* headers --------------------------------------------------------------

    def observe_headers(self, headers: Mapping[str, str]) -> None:
        """Follow the server's ``x-ratelimit-limit/remaining/reset-requests|tokens`` during the run."""
        if not self.learn_limits:
            return
        for kind, key in (("requests", "rpm"), ("tokens", "tpm")):
            limit = _number(headers.get(f"x-ratelimit-limit-{kind}"))
            if limit is None:
                continue
            remaining = _number(headers.get(f"x-ratelimit-remaining-{kind}"))
            reset = headers.get(f"x-ratelimit-reset-{kind}")
            self._server[f"limit_{kind}"] = limit
            if remaining is not None:
                self._server[f"remaining_{kind}"] = remaining
            if reset:
                reset_s = parse_reset(reset)
                if reset_s is not None:
                    self._server[f"reset_{kind}_s"] = reset_s
            self._follow(key, limit, remaining)

    def _follow(self, key: str, limit: float, remaining: float | None) -> None:
        now = self._clock()
        if limit != self._learnt[key]:
            self._learnt[key] = limit
            configured = self._configured[key]
            effective = min(limit, configured) if configured else limit
            self._limit[key] = effective
            bucket = self._requests if key == "rpm" else self._tokens
            if bucket is None:
                bucket = TokenBucket(effective * self._pace, self._burst_s, now)
                if key == "rpm":
                    self._requests = bucket
                else:
                    self._tokens = bucket
            elif abs(bucket.rate * 60.0 - effective * self._pace) > 1e-9:
                bucket.retune(effective * self._pace, self._burst_s, now)
        if remaining is not None:
            # The server knows about traffic we can't see (other clients on the same key): never believe
            # we have more left than it says.
            bucket = self._requests if key == "rpm" else self._tokens
            if bucket is not None:
                bucket.refill(now)
                bucket.level = min(bucket.level, remaining)

    # -- reporting ------------------------------------------------------------------------------------

    @property
    def limits(self) -> dict[str, float | None]:
        """The limits followed (configured, or learnt when stricter); pacing runs ``headroom`` below them."""
        return {"rpm": self._limit["rpm"], "tpm": self._limit["tpm"], "max_in_flight": self.max_in_flight}

    def snapshot(self) -> dict:
        """Live figures for progress displays: rates over the last 60 s, slots, limits, server headers."""
        now = self._clock()
        return {
            "rpm": round(self._sent.per_minute(now), 1),
            "tpm": round(self._used.per_minute(now), 1),
            "in_flight": self.in_flight,
            "waiting": sum(1 for future, _ in self._waiters if not future.done()),
            "paused_s": round(max(0.0, self._paused_until - now), 3),
            "pauses": self.pauses,
            "limits": self.limits,
            "learnt": dict(self._learnt),
            "server": dict(self._server),
        }


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None
