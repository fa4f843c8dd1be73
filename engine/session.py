"""One way to talk to an endpoint (or a pool of them): client, admission control and retry policy, together.

``async with open_session(endpoint) as session`` reads the key from the variable the endpoint names, builds
the client (keep-alive connections, the endpoint's timeouts and headers), admission control (its RPM, TPM
and in-flight limits, following the server's ``x-ratelimit-*`` headers when asked) and the retry policy.
``await session.check(role)`` asks ``GET /models`` before the first paid call, so a wrong URL or a refused key
is a clear error before any money is spent; ``await session.run(jobs, on_result)`` sends jobs through the
dispatcher. The generator, the evaluator's teacher and judge calls, the latency test and the engine
benchmark all open their sessions here.

Given several endpoints, the session is a pool (``engine.pool``): each endpoint keeps its own client, key,
limits and health, and each request goes to one with room for it.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from distill.engine.admission import Admission
from distill.engine.client import OpenAIChatClient
from distill.engine.dispatch import Budget, DispatchOutcome, ResultCallback, dispatch
from distill.engine.errors import AUTH, CONNECTION, REDIRECT, TIMEOUT, CallError
from distill.engine.pool import Lane, OneEndpoint, Pool
from distill.engine.retry import RetryPolicy
from distill.engine.types import ChatRequest, ChatResponse, Job

from distill.endpoint import Endpoint, resolve_api_key
from distill.errors import UserError


class EndpointSession:
    """Open clients, admission control and a retry policy for one endpoint or a pool. Use :func:`open_session`."""

    def __init__(
        self,
        endpoints: Endpoint | Sequence[Endpoint],
        api_keys: str | None | Sequence[str | None],
        *,
        concurrency: int | None = None,
        retry: RetryPolicy | None = None,
        learn_limits: bool | None = None,
    ) -> None:
        targets = [endpoints] if isinstance(endpoints, Endpoint) else list(endpoints)
        keys = [api_keys] * len(targets) if api_keys is None or isinstance(api_keys, str) else list(api_keys)
        lanes = []
        for endpoint, key in zip(targets, keys, strict=True):
            in_flight = concurrency or endpoint.concurrency
            learn = endpoint.learn_limits_from_headers if learn_limits is None else learn_limits
            admission = Admission(endpoint.rpm, endpoint.tpm, in_flight, learn_limits=learn)
            client = OpenAIChatClient(
                endpoint,
                key,
                max_connections=in_flight,
                on_headers=admission.observe_headers if learn else None,
            )
            lanes.append(Lane(endpoint, client, admission))
        self.lanes: OneEndpoint | Pool = OneEndpoint(lanes[0]) if len(lanes) == 1 else Pool(lanes)
        self.endpoint = targets[0]
        self.client = lanes[0].client
        self.admission = lanes[0].admission
        self.retry = retry or RetryPolicy(max_attempts=self.endpoint.retries + 1)
        # Every failed attempt by class, retried ones included, as it happens: for live displays.
        self.errors: Counter[str] = Counter()

    async def check(self, role: str) -> list[str]:
        """``GET /models`` of each endpoint: a UserError for an unreachable server or a refused key (in a
        pool: only when every endpoint fails; the failing ones are taken out); warnings otherwise."""
        warnings: list[str] = []
        failures: list[str] = []
        for lane in self.lanes.lanes:
            try:
                warnings += await self._check_one(lane, role)
            except UserError as problem:
                if not self.lanes.pooled:
                    raise
                failures.append(str(problem))
                lane.failed(CallError(CONNECTION, str(problem)))
        if failures and len(failures) == len(self.lanes.lanes):
            raise UserError("every endpoint failed its check:\n" + "\n".join(failures))
        return warnings + [f"{message} (taken out of the pool; probed again later)" for message in failures]

    async def _check_one(self, lane: Lane, role: str) -> list[str]:
        endpoint = lane.endpoint
        try:
            models = await lane.client.list_models()
        except CallError as error:
            detail = f"{error.error_class}: {error.message}"
            if error.error_class in (CONNECTION, TIMEOUT):
                raise UserError(
                    f"{role}.base_url: cannot reach the {role} at {endpoint.base_url} ({detail})"
                ) from None
            if error.error_class == REDIRECT:
                raise UserError(f"{role}.base_url: {endpoint.base_url}: {error.message}") from None
            if error.error_class == AUTH:
                raise UserError(
                    f"{role}.api_key_env: the {role} at {endpoint.base_url} refused the key in "
                    f"${endpoint.api_key_env} ({detail})"
                ) from None
            # Some OpenAI-compatible servers have no /models; the first real call will tell.
            return []
        if models and endpoint.model not in models:
            return [
                f"{role} at {endpoint.base_url} does not list model {endpoint.model!r} "
                f"(it lists {', '.join(models[:5])})"
            ]
        return []

    async def run(
        self,
        jobs: Iterable[Job] | AsyncIterable[Job],
        on_result: ResultCallback,
        *,
        stop: asyncio.Event | None = None,
        stream: bool = False,
        budget: Budget | None = None,
    ) -> DispatchOutcome:
        """Send every job under the endpoints' limits and the retry policy (see :func:`dispatch`)."""
        return await dispatch(
            jobs,
            self.lanes,
            self.retry,
            on_result,
            stop=stop,
            stream=stream,
            errors=self.errors,
            budget=budget,
        )

    async def complete(self, request: ChatRequest, *, stream: bool = False) -> ChatResponse:
        """One request to the first endpoint, once, outside admission control (warm-up calls)."""
        return await self.client.complete(request, stream=stream)

    def snapshot(self) -> dict[str, Any]:
        """Live admission figures (added up over a pool's endpoints) for progress displays."""
        return self.lanes.snapshot()

    def endpoint_figures(self) -> list[dict[str, Any]]:
        """What each endpoint did: requests, answers, errors, tokens, spend, health (never a key)."""
        return [lane.figures() for lane in self.lanes.lanes]

    async def close(self) -> None:
        await self.lanes.close()
        for lane in self.lanes.lanes:
            await lane.client.close()


@asynccontextmanager
async def open_session(
    endpoints: Endpoint | Sequence[Endpoint],
    *,
    concurrency: int | None = None,
    retry: RetryPolicy | None = None,
    learn_limits: bool | None = None,
) -> AsyncIterator[EndpointSession]:
    """A session on ``endpoints`` (one, or several for a pool; keys read from their variables now), closed
    when the block ends.

    ``concurrency``, ``retry`` and ``learn_limits`` override the endpoints' own settings for callers that
    measure rather than produce (the latency test sends at a fixed concurrency without retries).
    """
    targets = [endpoints] if isinstance(endpoints, Endpoint) else list(endpoints)
    keys = [resolve_api_key(endpoint) for endpoint in targets]
    session = EndpointSession(targets, keys, concurrency=concurrency, retry=retry, learn_limits=learn_limits)
    try:
        yield session
    finally:
        await session.close()
