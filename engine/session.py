"""One way to talk to an endpoint: its client, admission control and retry policy, opened together.

``async with open_session(endpoint) as session`` reads the key from the variable the endpoint names, builds
the client (keep-alive connections, the endpoint's timeouts and headers), admission control (its RPM, TPM
and in-flight limits, following the server's ``x-ratelimit-*`` headers when asked) and the retry policy.
``await session.check(role)`` asks ``GET /models`` before the first paid call, so a wrong URL or a refused key
is a clear error before any money is spent; ``await session.run(jobs, on_result)`` sends jobs through the
dispatcher. The generator, the evaluator's teacher and judge calls, the latency test and the engine
benchmark all open their sessions here.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from contextlib import asynccontextmanager

from distill.engine.admission import Admission
from distill.engine.client import OpenAIChatClient
from distill.engine.dispatch import DispatchOutcome, ResultCallback, dispatch
from distill.engine.errors import AUTH, CONNECTION, TIMEOUT, CallError
from distill.engine.retry import RetryPolicy
from distill.engine.types import ChatRequest, ChatResponse, Job

from distill.endpoint import Endpoint, resolve_api_key
from distill.errors import UserError


class EndpointSession:
    """An open client, admission control and retry policy for one endpoint. Use :func:`open_session`."""

    def __init__(
        self,
        endpoint: Endpoint,
        api_key: str | None,
        *,
        concurrency: int | None = None,
        retry: RetryPolicy | None = None,
        learn_limits: bool | None = None,
    ) -> None:
        self.endpoint = endpoint
        in_flight = concurrency or endpoint.concurrency
        learn = endpoint.learn_limits_from_headers if learn_limits is None else learn_limits
        self.admission = Admission(endpoint.rpm, endpoint.tpm, in_flight, learn_limits=learn)
        self.client = OpenAIChatClient(
            endpoint,
            api_key,
            max_connections=in_flight,
            on_headers=self.admission.observe_headers if learn else None,
        )
        self.retry = retry or RetryPolicy(max_attempts=endpoint.retries + 1)
        # Every failed attempt by class, retried ones included, as it happens: for live displays.
        self.errors: Counter[str] = Counter()

    async def check(self, role: str) -> list[str]:
        """``GET /models``: a UserError for an unreachable server or a refused key; warnings otherwise."""
        endpoint = self.endpoint
        try:
            models = await self.client.list_models()
        except CallError as error:
            detail = f"{error.error_class}: {error.message}"
            if error.error_class in (CONNECTION, TIMEOUT):
                raise UserError(
                    f"{role}.base_url: cannot reach the {role} at {endpoint.base_url} ({detail})"
                ) from None
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
    ) -> DispatchOutcome:
        """Send every job under this endpoint's limits and retry policy (see :func:`dispatch`)."""
        return await dispatch(
            jobs,
            self.client,
            self.admission,
            self.retry,
            on_result,
            stop=stop,
            stream=stream,
            errors=self.errors,
        )

    async def complete(self, request: ChatRequest, *, stream: bool = False) -> ChatResponse:
        """One request, once, outside admission control (warm-up calls); raises CallError."""
        return await self.client.complete(request, stream=stream)

    async def close(self) -> None:
        await self.client.close()


@asynccontextmanager
async def open_session(
    endpoint: Endpoint,
    *,
    concurrency: int | None = None,
    retry: RetryPolicy | None = None,
    learn_limits: bool | None = None,
) -> AsyncIterator[EndpointSession]:
    """A session on ``endpoint`` (key read from its variable now), closed when the block ends.

    ``concurrency``, ``retry`` and ``learn_limits`` override the endpoint's own settings for callers that
    measure rather than produce (the latency test sends at a fixed concurrency without retries).
    """
    session = EndpointSession(
        endpoint, resolve_api_key(endpoint), concurrency=concurrency, retry=retry, learn_limits=learn_limits
    )
    try:
        yield session
    finally:
        await session.close()
