"""The hot loop: pull jobs lazily, send each under admission control, retry transient failures, report once.

Guarantees the runner builds exactly-once resume on:

- ``on_result(job, ChatResponse | CallFailure)`` is called synchronously on the event loop, at most once per
  job: once for every job that finished (success or final failure) and never for a job a stop interrupted.
  Whatever the callback writes without awaiting is on disk before the next job's result is handled.
- Jobs are pulled from the iterable only when a slot is free, so at most ``admission.max_in_flight`` job
  tasks are alive and a million-line input streams with flat memory.
- With a ``budget``, each job holds its most expensive outcome from admission to its report, and the first
  job the budget cannot cover stops admission (``BUDGET``): in-flight work can never overshoot it.
- ``stop`` (budget reached, target reached, Ctrl-C) or a fatal error (bad key, no quota): nothing new is
  admitted from the moment it is set (not even into the slot its own ``on_result`` freed), nothing is retried,
  requests already on the wire finish and are reported. Interrupted jobs get no record, so a resumed run sends
  them again; so do the jobs that met the fatal error (they were fine, the key was not),
  and the first such failure is ``outcome.fatal``.
- Callers open it through ``engine.session``, which wires the client's headers to the admission's limits.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from distill.engine.admission import Admission
from distill.engine.client import OpenAIChatClient
from distill.engine.errors import RATE_LIMITED, CallError
from distill.engine.pool import HARD_FAILURES, Lane, OneEndpoint
from distill.engine.retry import RetryPolicy
from distill.engine.types import CallFailure, ChatResponse, Job

ResultCallback = Callable[[Job, ChatResponse | CallFailure], None]

STOPPED = "stopped"
FATAL = "fatal"
CRASHED = "error"
BUDGET = "budget"


class Budget(Protocol):
    """Money held per request from admission to report (the engine's CostMeter)."""

    def reserve(self, job: Job) -> bool: ...

    def release(self, job: Job) -> None: ...


@dataclass
class DispatchOutcome:
    jobs_started: int = 0
    sent: int = 0  # attempts on the wire, retries included
    succeeded: int = 0
    failed: Counter[str] = field(default_factory=Counter)  # final failures by error class
    retries: Counter[str] = field(default_factory=Counter)  # retried attempts by error class
    unfinished: int = 0  # started, then interrupted by a stop: no record, resend on resume
    stopped_reason: str | None = None  # None when every job ran; else STOPPED, FATAL or CRASHED
    fatal: CallFailure | None = None
    elapsed_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "jobs_started": self.jobs_started,
            "sent": self.sent,
            "succeeded": self.succeeded,
            "failed": dict(self.failed),
            "retries": dict(self.retries),
            "unfinished": self.unfinished,
            "stopped_reason": self.stopped_reason,
            "fatal": None
            if self.fatal is None
            else {"error_class": self.fatal.error_class, "message": self.fatal.message},
            "elapsed_s": round(self.elapsed_s, 3),
        }


def _failure(error: CallError, attempts: int) -> CallFailure:
    return CallFailure(error.error_class, error.message, error.status, attempts, error.retryable)


class Lanes(Protocol):
    """Where requests go (``engine.pool``): one endpoint, or a pool of them."""

    pooled: bool
    max_in_flight: int
    single: Lane | None  # set when there is only one lane: it is waited for directly

    async def acquire(self, reserved_tokens: int) -> Lane: ...


def one_endpoint(client: OpenAIChatClient, admission: Admission) -> OneEndpoint:
    """The lanes of one client and its admission control (``engine.session`` builds them for callers)."""
    return OneEndpoint(Lane(client.endpoint, client, admission))


class _Dispatcher:
    def __init__(
        self,
        lanes: Lanes,
        retry: RetryPolicy,
        on_result: ResultCallback,
        stream: bool,
        rate_limit_pause_s: float,
        errors: Counter[str],
        budget: Budget | None,
        stop: asyncio.Event | None,
    ) -> None:
        self.lanes = lanes
        self.retry = retry
        self.on_result = on_result
        self.stream = stream
        self.rate_limit_pause_s = rate_limit_pause_s
        self.errors = errors
        self.budget = budget
        self.stop = stop
        self.outcome = DispatchOutcome()
        self.alive: set[asyncio.Task] = set()
        self.backing_off: set[asyncio.Task] = set()  # sleeping or queued for a retry: safe to cancel
        self.halted = False
        self.crash: BaseException | None = None
        self.room = asyncio.Event()
        self.producer: asyncio.Task | None = None

    def stopping(self) -> bool:
        """Halted, or about to be: the caller's ``stop`` is set (a result that reached the target sets it inside
        ``on_result``), and no job may start after it, even before the watcher task that halts on it has run."""
        if self.stop is not None and self.stop.is_set():
            self.halt(STOPPED)
        return self.halted

    def halt(self, reason: str) -> None:
        if self.halted:
            return
        self.halted = True
        self.outcome.stopped_reason = reason
        if self.producer is not None:
            self.producer.cancel()
        for task in list(self.backing_off):
            task.cancel()

    def abandon(self) -> None:
        """Our caller was cancelled: requests in flight end unreported, to be resent on resume."""
        self.halt(STOPPED)
        for task in self.alive:
            task.cancel()

    def fatal(self, error: CallError, attempts: int) -> None:
        """Stop the run for ``error`` (the first one is kept): every later call would fail the same way."""
        if self.outcome.fatal is None:
            self.outcome.fatal = _failure(error, attempts)
        self.halt(FATAL)

    async def produce(self, jobs: Iterable[Job] | AsyncIterable[Job]) -> None:
        limit = self.lanes.max_in_flight
        single = self.lanes.single
        loop = asyncio.get_running_loop()
        is_async = isinstance(jobs, AsyncIterable)
        iterator: Any = jobs.__aiter__() if is_async else iter(jobs)
        while not self.stopping():
            if len(self.alive) >= limit:
                self.room.clear()
                await self.room.wait()
                continue
            try:
                job = await iterator.__anext__() if is_async else next(iterator)
            except (StopIteration, StopAsyncIteration):
                return
            if self.budget is not None and not await self._reserve(self.budget, job):
                return
            try:
                if single is not None:
                    await single.admission.acquire(job.reserved_tokens)
                    lane = single
                else:
                    lane = await self.lanes.acquire(job.reserved_tokens)
            except BaseException as exc:
                if self.budget is not None:
                    self.budget.release(job)
                if isinstance(exc, CallError):  # every endpoint of a pool is out: this job was never sent
                    self.fatal(exc, 0)
                    return
                raise
            if self.stopping():  # the stop came while this job waited for admission: it is never sent
                lane.release(job.reserved_tokens, 0)
                if self.budget is not None:
                    self.budget.release(job)
                return
            self.outcome.jobs_started += 1
            task = loop.create_task(self.run_job(job, lane))
            self.alive.add(task)
            task.add_done_callback(self._task_done)

    async def _reserve(self, budget: Budget, job: Job) -> bool:
        """Hold ``job``'s cost, waiting for requests in flight to hand theirs back; False: out of budget."""
        while not budget.reserve(job):
            if not self.alive:
                self.halt(BUDGET)  # this job was never started: a resume with more budget sends it
                return False
            self.room.clear()
            await self.room.wait()
            if self.halted:
                return False
        return True

    def _task_done(self, task: asyncio.Task) -> None:
        self.alive.discard(task)
        self.room.set()

    async def run_job(self, job: Job, lane: Lane) -> None:
        """One job from its first attempt (admission already taken on ``lane``) to its single report."""
        outcome = self.outcome
        holding = True  # whether we hold an admission slot that must be released
        attempt = 0
        try:
            while True:
                attempt += 1
                outcome.sent += 1
                lane.sent += 1
                try:
                    response = await lane.client.complete(job.request, stream=self.stream)
                except CallError as error:
                    self.errors[error.error_class] += 1
                    # A 429 was refused before it was counted; anything else may have been charged.
                    lane.release(job.reserved_tokens, 0 if error.error_class == RATE_LIMITED else None)
                    holding = False
                    next_lane = await self._after_error(job, lane, error, attempt)
                    if next_lane is None:
                        return
                    lane, holding = next_lane, True
                    continue
                usage = response.usage
                lane.release(
                    job.reserved_tokens, usage.prompt_tokens + usage.completion_tokens if usage else None
                )
                holding = False
                lane.succeeded(response)
                response.attempts = attempt
                response.endpoint = lane.name
                outcome.succeeded += 1
                self.on_result(job, response)
                return
        except asyncio.CancelledError:
            if holding:
                lane.release(job.reserved_tokens, None)
            outcome.unfinished += 1
        except BaseException as exc:  # a failing on_result (full disk, ...) must stop the run, not vanish
            if self.crash is None:
                self.crash = exc
            self.halt(CRASHED)
        finally:
            if self.budget is not None:
                self.budget.release(job)

    async def _after_error(self, job: Job, lane: Lane, error: CallError, attempt: int) -> Lane | None:
        """Report, stop, or back off and re-admit. The lane to send it on again, or None when done."""
        outcome = self.outcome
        # In a pool, an endpoint's own failure (refused key, dead server) takes that endpoint out, and the
        # request goes to another one; alone, a fatal error stops the run.
        elsewhere = lane.failed(error) and self.lanes.pooled
        if error.fatal and not elsewhere:
            outcome.unfinished += 1
            self.fatal(error, attempt)
            return None
        if error.error_class == RATE_LIMITED:
            lane.admission.pause(
                error.retry_after if error.retry_after is not None else self.rate_limit_pause_s
            )
        # The endpoint's own fault, not the request's: another endpoint takes it, whatever the attempts so far.
        owed_elsewhere = elsewhere and error.error_class in HARD_FAILURES
        if not owed_elsewhere and (
            not (error.retryable or elsewhere) or not self.retry.should_retry(attempt)
        ):
            outcome.failed[error.error_class] += 1
            self.on_result(job, _failure(error, attempt))
            return None
        if self.halted:
            outcome.unfinished += 1
            return None
        outcome.retries[error.error_class] += 1
        task = asyncio.current_task()
        self.backing_off.add(task)
        try:
            if not elsewhere:  # another endpoint can take it at once; the same one gets time to recover
                await asyncio.sleep(self.retry.delay(attempt, error.retry_after))
            return await self.lanes.acquire(job.reserved_tokens)
        except CallError as down:  # every endpoint of the pool is out
            outcome.unfinished += 1
            self.fatal(down, attempt)
            return None
        finally:
            self.backing_off.discard(task)


async def dispatch(
    jobs: Iterable[Job] | AsyncIterable[Job],
    lanes: Lanes,
    retry: RetryPolicy,
    on_result: ResultCallback,
    *,
    stop: asyncio.Event | None = None,
    stream: bool = False,
    rate_limit_pause_s: float = 1.0,
    errors: Counter[str] | None = None,
    budget: Budget | None = None,
) -> DispatchOutcome:
    """Send every job (see the module docstring for the guarantees) and return what happened.

    ``errors`` (optional) counts every failed attempt by class as it happens, retried ones included, for live
    displays.
    """
    started = time.perf_counter()
    state = _Dispatcher(
        lanes,
        retry,
        on_result,
        stream,
        rate_limit_pause_s,
        Counter() if errors is None else errors,
        budget,
        stop,
    )
    state.producer = asyncio.get_running_loop().create_task(state.produce(jobs))
    watcher = None
    if stop is not None:
        if stop.is_set():
            state.halt(STOPPED)
        else:
            watcher = asyncio.create_task(stop.wait())
            watcher.add_done_callback(lambda task: task.cancelled() or state.halt(STOPPED))
    try:
        try:
            await state.producer
        except asyncio.CancelledError:
            if not state.halted:  # our caller was cancelled, not a halt of ours
                state.abandon()
                raise
        except BaseException as exc:
            state.crash = exc  # the jobs iterable itself failed (bad input line, ...)
            state.halt(CRASHED)
        while state.alive:
            try:
                await asyncio.wait(set(state.alive))
            except asyncio.CancelledError:
                state.abandon()
                raise
    finally:
        if watcher is not None and not watcher.done():
            watcher.cancel()
    state.outcome.elapsed_s = time.perf_counter() - started
    if state.crash is not None:
        raise state.crash
    return state.outcome
