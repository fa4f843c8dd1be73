"""Calls to an OpenAI-compatible ``/v1/chat/completions``: one aiohttp session, keep-alive, orjson.

Each call either returns a :class:`ChatResponse` or raises :class:`CallError` with its class; deciding what
to do about a failure (retry, give up, stop) is the dispatcher's job, not the client's.

The API key lives only in the ``Authorization`` header built here. It is scrubbed from every message this
module raises (some servers echo what they were sent) and never appears in ``repr``.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import aiohttp
import orjson
from distill.engine.errors import (
    BAD_RESPONSE,
    CONNECTION,
    CONTENT_FILTER,
    SERVER_ERROR,
    TIMEOUT,
    CallError,
    classify_status,
)
from distill.engine.types import ChatRequest, ChatResponse, Usage

from distill.endpoint import Endpoint, normalise_base_url

HeadersObserver = Callable[[Mapping[str, str]], None]

_COMPLETIONS_PATH = "/chat/completions"
_SSE_DATA = b"data:"
_TOKENS_LIMIT = 2**31
_SSE_DONE = b"[DONE]"


class ChatClient(Protocol):
    async def complete(self, request: ChatRequest, *, stream: bool = False) -> ChatResponse: ...


def ensure_open_files(needed: int) -> int:
    """Raise this process's soft open-files limit towards ``needed`` (capped by the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


class OpenAIChatClient:
    """An aiohttp client for one OpenAI-compatible endpoint. Use as ``async with`` or call :meth:`close`."""

    def __init__(
        self,
        endpoint: Endpoint,
        api_key: str | None,
        *,
        max_connections: int = 1024,
        on_headers: HeadersObserver | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.base_url = normalise_base_url(endpoint.base_url)
        self._url = self.base_url + _COMPLETIONS_PATH
        self._key = api_key or None
        self._headers = {**endpoint.headers, "Content-Type": "application/json", "Accept": "application/json"}
        if self._key:
            self._headers["Authorization"] = f"Bearer {self._key}"
        self._timeout = aiohttp.ClientTimeout(
            total=endpoint.request_timeout_s,
            sock_connect=min(endpoint.request_timeout_s, endpoint.connect_timeout_s),
        )
        self._max_connections = max_connections
        self.on_headers = on_headers
        self.last_headers: Mapping[str, str] | None = None
        self._session: aiohttp.ClientSession | None = None
        # Each connection is a file descriptor; thousands in flight need more than the usual soft 1024.
        ensure_open_files(max_connections + 256)

    def __repr__(self) -> str:
        return f"OpenAIChatClient({self.base_url!r}, api_key={'***' if self._key else None})"

    async def __aenter__(self) -> OpenAIChatClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        # Created lazily so it binds to the loop that runs the calls.
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=0, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, headers=self._headers, trust_env=False
            )
        return self._session

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key and self._key in text else text

    def _error(self, error_class: str, message: str, **kwargs: Any) -> CallError:
        return CallError(error_class, self._scrub(message), **kwargs)

    def _observe(self, headers: Mapping[str, str]) -> None:
        self.last_headers = headers
        if self.on_headers is not None:
            self.on_headers(headers)

    async def complete(self, request: ChatRequest, *, stream: bool = False) -> ChatResponse:
        """Send ``request`` once. Raises :class:`CallError` on any failure, classified."""
        body = request_body(request)
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        headers = {"X-Client-Request-Id": request.request_id} if request.request_id else None
        session = self._get_session()
        started = time.perf_counter()
        try:
            async with session.post(self._url, data=orjson.dumps(body), headers=headers) as response:
                self._observe(response.headers)
                if response.status != 200:
                    raw = await response.read()
                    error = classify_status(response.status, raw, response.headers)
                    error.message = self._scrub(error.message)
                    raise error
                if stream:
                    return await self._read_stream(response, started)
                raw = await response.read()
        except CallError:
            raise
        except TimeoutError:
            raise self._error(TIMEOUT, "no complete answer within the request timeout") from None
        except aiohttp.ClientPayloadError as exc:
            raise self._error(CONNECTION, f"response body cut off: {exc}") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise self._error(CONNECTION, f"{type(exc).__name__}: {exc}") from None
        return self._parse_body(raw, started)

    def _parse_body(self, raw: bytes, started: float) -> ChatResponse:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            data = None
        try:
            return parse_completion(data, (time.perf_counter() - started) * 1000.0)
        except CallError as error:
            if error.error_class == BAD_RESPONSE:
                preview = raw[:80].decode("utf-8", "replace")
                error.message = f"not a chat completion ({len(raw)} bytes): {preview!r}"
            error.message = self._scrub(error.message)
            raise

    async def _read_stream(self, response: aiohttp.ClientResponse, started: float) -> ChatResponse:
        """Server-sent events: content deltas, then (with include_usage) a last chunk holding ``usage``."""
        parts: list[str] = []
        finish_reason = usage = model = None
        arrivals: list[float] = []  # ms after sending, one per content chunk: TTFT and inter-token latency
        async for line in response.content:
            if not line.startswith(_SSE_DATA):
                continue
            payload = line[len(_SSE_DATA) :].strip()
            if payload == _SSE_DONE:
                break
            try:
                event = orjson.loads(payload)
            except orjson.JSONDecodeError:
                raise self._error(BAD_RESPONSE, f"malformed stream event: {payload[:80]!r}") from None
            if "error" in event:
                raise self._error(SERVER_ERROR, f"error inside the stream: {_error_text(event['error'])}")
            model = event.get("model", model)
            if event.get("usage"):
                usage = event["usage"]
            for choice in event.get("choices") or ():
                delta = (choice.get("delta") or {}).get("content")
                if delta:
                    arrivals.append((time.perf_counter() - started) * 1000.0)
                    parts.append(delta)
                finish_reason = choice.get("finish_reason") or finish_reason
        else:
            raise self._error(BAD_RESPONSE, "stream ended without [DONE]")
        if finish_reason == "content_filter":
            raise self._error(CONTENT_FILTER, "the provider's content filter stopped the answer", status=200)
        parsed_usage = _usage(usage)
        tokens = parsed_usage.completion_tokens if parsed_usage else len(arrivals)
        tpot_ms = (arrivals[-1] - arrivals[0]) / (tokens - 1) if arrivals and tokens > 1 else None
        return ChatResponse(
            text="".join(parts),
            finish_reason=finish_reason,
            usage=parsed_usage,
            latency_ms=(time.perf_counter() - started) * 1000.0,
            model=model,
            ttft_ms=arrivals[0] if arrivals else None,
            tpot_ms=tpot_ms,
            chunk_times_ms=arrivals,
        )

    async def list_models(self) -> list[str]:
        """Model ids from ``GET /v1/models``: a cheap reachability and key check before spending."""
        session = self._get_session()
        try:
            async with session.get(self.base_url + "/models") as response:
                raw = await response.read()
                if response.status != 200:
                    error = classify_status(response.status, raw, response.headers)
                    error.message = self._scrub(error.message)
                    raise error
        except CallError:
            raise
        except TimeoutError:
            raise self._error(TIMEOUT, f"{self.base_url}/models did not answer in time") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise self._error(CONNECTION, f"cannot reach {self.base_url}: {exc}") from None
        try:
            return [str(item["id"]) for item in orjson.loads(raw)["data"]]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise self._error(BAD_RESPONSE, f"{self.base_url}/models: not a model list") from None


def request_body(request: ChatRequest) -> dict[str, Any]:
    """The JSON body of a ``/v1/chat/completions`` call (online, or one line of a batch input file)."""
    body: dict[str, Any] = {
        "model": request.model,
        "messages": request.messages,
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
    }
    if request.extra_body:
        body.update(request.extra_body)
    return body


def parse_completion(data: Any, latency_ms: float) -> ChatResponse:
    """A decoded ``chat.completion`` object (an online answer's body, or a batch output line's) → ChatResponse.

    Raises CallError: ``bad_response`` when it is not a completion, ``content_filter`` when the provider's
    filter stopped the answer.
    """
    try:
        choice = data["choices"][0]
        text = choice["message"].get("content") or ""
        finish_reason = choice.get("finish_reason")
        if not isinstance(text, str):
            raise TypeError("content is not text")
    except (KeyError, IndexError, TypeError, AttributeError):
        raise CallError(BAD_RESPONSE, "not a chat completion") from None
    if finish_reason == "content_filter":
        raise CallError(CONTENT_FILTER, "the provider's content filter stopped the answer", status=200)
    model = data.get("model")
    return ChatResponse(
        text=text,
        finish_reason=finish_reason if isinstance(finish_reason, str) else None,
        usage=_usage(data.get("usage")),
        latency_ms=latency_ms,
        model=model if isinstance(model, str) else None,
    )


def _usage(data: Any) -> Usage | None:
    if not isinstance(data, dict):
        return None
    try:
        usage = Usage(int(data.get("prompt_tokens") or 0), int(data.get("completion_tokens") or 0))
    except (TypeError, ValueError):
        return None
    # Untrusted counts go into the ledger's 32-bit fields: nonsense is dropped, not stored.
    if not (0 <= usage.prompt_tokens < _TOKENS_LIMIT and 0 <= usage.completion_tokens < _TOKENS_LIMIT):
        return None
    return usage


def _error_text(error: Any) -> str:
    return str(error.get("message", error)) if isinstance(error, dict) else str(error)
