"""Calls to an OpenAI-compatible ``/v1/chat/completions``: one aiohttp session, keep-alive, orjson.

Each call either returns a :class:`ChatResponse` or raises :class:`CallError` with its class; deciding what
to do about a failure (retry, give up, stop) is the dispatcher's job, not the client's.

Every byte a server sends is untrusted. The API key lives only in the ``Authorization`` header built here;
anything the server sends back is scrubbed of it (and of any 8-character piece of it) *before* it is cut to
a message or preview, and an answer that contains the key is refused (``key_echoed``), never returned.
Redirects are never followed (they would re-send the prompts, and the key, elsewhere). A response may not
be larger than ``max_response_bytes`` (decompressed; by default derived from ``max_tokens``), and its answer
not longer than ``max_tokens`` tokens could be; ``usage`` must hold token counts, or the call fails as
``bad_usage``. A server's ``Retry-After`` is capped at ``max_retry_wait_s``.
"""

from __future__ import annotations

import math
import resource
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import aiohttp
import orjson
from aiohttp.http_exceptions import HttpProcessingError
from distill.engine.errors import (
    BAD_RESPONSE,
    BAD_USAGE,
    CONNECTION,
    CONTENT_FILTER,
    KEY_ECHOED,
    REDIRECT,
    RESPONSE_TOO_LARGE,
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
_SSE_DONE = b"[DONE]"
_MESSAGE_LIMIT = 300  # characters of a server's text kept in an error message (after scrubbing)
_PREVIEW = 80  # characters of a body that is not JSON
_ERROR_BODY_LIMIT = 64 * 1024  # bytes read of a non-200 answer
_KEY_PIECE = 8  # this many characters of the key in a row count as the key
_MAX_TOKEN_COUNT = 1_000_000_000  # no single call uses a billion tokens: above that, usage is broken
_FIELD_LIMIT = 200  # characters of `model` / `finish_reason` kept
_FIELDS_REMEMBERED = 64
_READ_CHUNK = 64 * 1024
# An answer of more than this many characters per max_tokens token is not what the model could have produced.
MAX_CHARS_PER_TOKEN = 32
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


def response_byte_limit(endpoint: Endpoint, max_tokens: int) -> int:
    """Bytes one answer may take: ``max_response_bytes``, or 1 MiB + 512 bytes per ``max_tokens`` token."""
    return endpoint.max_response_bytes or (1 << 20) + 512 * max_tokens


class KeyScrubber:
    """Removes the key, and any run of 8+ characters copied from it, from text a server sent."""

    __slots__ = ("key", "pieces")

    def __init__(self, key: str | None) -> None:
        self.key = key or None
        key = self.key or ""
        self.pieces = frozenset(key[i : i + _KEY_PIECE] for i in range(len(key) - _KEY_PIECE + 1))

    def __call__(self, text: str) -> str:
        if not self.key:
            return text
        text = text.replace(self.key, "***")
        pieces = self.pieces
        if not pieces:
            return text
        marked = bytearray(len(text))
        found = False
        for start in range(len(text) - _KEY_PIECE + 1):
            if text[start : start + _KEY_PIECE] in pieces:
                marked[start : start + _KEY_PIECE] = b"\x01" * _KEY_PIECE
                found = True
        if not found:
            return text
        out: list[str] = []
        for index, char in enumerate(text):
            if not marked[index]:
                out.append(char)
            elif index == 0 or not marked[index - 1]:
                out.append("***")
        return "".join(out)

    def cut(self, raw: bytes | str, limit: int) -> str:
        """Scrub, then cut to ``limit`` characters: no cut can leave part of the key behind."""
        window = limit + (len(self.key) if self.key else 0) + _KEY_PIECE
        text = raw[: window * 4].decode("utf-8", "replace") if isinstance(raw, bytes) else raw[:window]
        return self(text[:window])[:limit]

    def field(self, value: Any) -> str | None:
        """A short text field of an answer (model, finish_reason) as it may be written: text, scrubbed, cut."""
        return self.cut(value, _FIELD_LIMIT) if isinstance(value, str) else None


class ChatClient(Protocol):
    async def complete(self, request: ChatRequest, *, stream: bool = False) -> ChatResponse: ...

    async def list_models(self) -> list[str]: ...


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
        self._scrub = KeyScrubber(self._key)
        self._fields: dict[str, str] = {}
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

    def _error(self, error_class: str, message: str, **kwargs: Any) -> CallError:
        return CallError(error_class, self._scrub.cut(message, _MESSAGE_LIMIT * 2), **kwargs)

    def _observe(self, headers: Mapping[str, str]) -> None:
        self.last_headers = headers
        if self.on_headers is not None:
            self.on_headers(headers)

    async def _refusal(self, response: aiohttp.ClientResponse) -> CallError:
        """The error for a non-200 answer: scrubbed before anything is cut, Retry-After capped."""
        if response.status in _REDIRECTS:
            where = self._scrub.cut(response.headers.get("Location", "(no Location)"), _MESSAGE_LIMIT)
            return CallError(
                REDIRECT,
                f"HTTP {response.status} redirect to {where}: distill does not follow redirects (they would send "
                "the prompts, and the key, to another address); set base_url to the address that answers",
                status=response.status,
            )
        raw = await response.content.read(_ERROR_BODY_LIMIT)
        error = classify_refusal(response.status, raw, self._scrub, response.headers)
        if error.retry_after is not None:
            cap = self.endpoint.max_retry_wait_s
            wait = error.retry_after
            error.retry_after = cap if not math.isfinite(wait) or wait > cap else wait
        return error

    async def _read_body(self, response: aiohttp.ClientResponse, limit: int) -> bytes:
        """The whole body, or RESPONSE_TOO_LARGE as soon as it (decompressed) passes ``limit`` bytes."""
        length = response.content_length
        if length is not None and length > limit:
            raise self._too_large(f"the server announced {length:,} bytes", limit)
        if length is not None and "Content-Encoding" not in response.headers:
            return await response.read()  # bounded by Content-Length
        buffer = bytearray()
        async for chunk in response.content.iter_chunked(_READ_CHUNK):
            buffer += chunk
            if len(buffer) > limit:
                raise self._too_large("the body (decompressed) kept coming", limit)
        return bytes(buffer)

    def _too_large(self, what: str, limit: int) -> CallError:
        return CallError(
            RESPONSE_TOO_LARGE,
            f"{what}, more than the {limit:,} bytes one answer may take (max_response_bytes; by default "
            "1 MiB + 512 bytes per max_tokens token)",
        )

    async def complete(self, request: ChatRequest, *, stream: bool = False) -> ChatResponse:
        """Send ``request`` once. Raises :class:`CallError` on any failure, classified."""
        body = request_body(request, self.endpoint.max_tokens_field)
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        headers = {"X-Client-Request-Id": request.request_id} if request.request_id else None
        limit = response_byte_limit(self.endpoint, request.max_tokens)
        session = self._get_session()
        started = time.perf_counter()
        try:
            async with session.post(
                self._url, data=orjson.dumps(body), headers=headers, allow_redirects=False
            ) as response:
                self._observe(response.headers)
                if response.status != 200:
                    raise await self._refusal(response)
                if stream:
                    parsed = await self._read_stream(response, started, limit)
                else:
                    parsed = self._parse_body(await self._read_body(response, limit), started)
        except CallError:
            raise
        except TimeoutError:
            raise self._error(TIMEOUT, "no complete answer within the request timeout") from None
        except aiohttp.ClientPayloadError as exc:
            raise self._error(CONNECTION, f"response body cut off: {exc}") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise self._error(CONNECTION, f"{type(exc).__name__}: {exc}") from None
        return self._checked(parsed, request.max_tokens)

    def _checked(self, response: ChatResponse, max_tokens: int) -> ChatResponse:
        return checked_answer(response, max_tokens, self._key)

    def _parse_body(self, raw: bytes, started: float) -> ChatResponse:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            data = None
        try:
            return parse_completion(data, (time.perf_counter() - started) * 1000.0, self._field)
        except CallError as error:
            if error.error_class == BAD_RESPONSE:
                error.message = (
                    f"not a chat completion ({len(raw)} bytes): {self._scrub.cut(raw, _PREVIEW)!r}"
                )
            else:
                error.message = self._scrub(error.message)
            raise

    def _field(self, value: Any) -> str | None:
        """A short text field of the answer (model, finish_reason) as it may be written: text, scrubbed, cut."""
        if not isinstance(value, str):
            return None
        known = self._fields.get(value)
        if known is None:
            known = self._scrub.field(value)
            if len(self._fields) < _FIELDS_REMEMBERED:  # the same few values come back on every answer
                self._fields[value] = known
        return known

    async def _read_stream(
        self, response: aiohttp.ClientResponse, started: float, limit: int
    ) -> ChatResponse:
        """Server-sent events: content (and reasoning) deltas, then with include_usage a chunk holding ``usage``."""
        parts: list[str] = []
        thinking: list[str] = []
        finish_reason = usage = model = None
        arrivals: list[float] = []  # ms after sending, one per content chunk: TTFT and inter-token latency
        received = 0
        lines = response.content.__aiter__()
        while True:
            try:
                line = await lines.__anext__()
            except StopAsyncIteration:
                raise self._error(BAD_RESPONSE, "stream ended without [DONE]") from None
            except (ValueError, HttpProcessingError):  # aiohttp: a line longer than its buffer
                raise self._too_large("a stream event line was too long", limit) from None
            received += len(line)
            if received > limit:
                raise self._too_large("the stream kept coming", limit)
            if not line.startswith(_SSE_DATA):
                continue
            payload = line[len(_SSE_DATA) :].strip()
            if payload == _SSE_DONE:
                break
            try:
                event = orjson.loads(payload)
            except orjson.JSONDecodeError:
                raise self._error(
                    BAD_RESPONSE, f"malformed stream event: {self._scrub.cut(payload, _PREVIEW)!r}"
                ) from None
            try:
                if "error" in event:
                    raise self._error(SERVER_ERROR, f"error inside the stream: {_error_text(event['error'])}")
                model = event.get("model", model)
                if event.get("usage"):
                    usage = event["usage"]
                for choice in event.get("choices") or ():
                    delta = choice.get("delta") or {}
                    content = delta.get("content")
                    reasoning = delta.get("reasoning_content") or delta.get("reasoning")
                    if content or reasoning:
                        arrivals.append((time.perf_counter() - started) * 1000.0)
                        if content:
                            parts.append(content)
                        if reasoning:
                            thinking.append(reasoning)
                    finish_reason = choice.get("finish_reason") or finish_reason
            except (AttributeError, TypeError):  # an event, choice or delta that is not an object
                raise self._error(BAD_RESPONSE, "a stream event is not a chat completion chunk") from None
        if finish_reason == "content_filter":
            raise self._error(CONTENT_FILTER, "the provider's content filter stopped the answer", status=200)
        try:
            text, reasoning_text = "".join(parts), "".join(thinking)
        except TypeError:
            raise self._error(BAD_RESPONSE, "a stream delta is not text") from None
        parsed_usage = parse_usage(usage)
        return ChatResponse(
            text=text,
            finish_reason=self._field(finish_reason),
            usage=parsed_usage,
            latency_ms=(time.perf_counter() - started) * 1000.0,
            model=self._field(model),
            ttft_ms=arrivals[0] if arrivals else None,
            chunk_times_ms=arrivals,
            reasoning=reasoning_text or None,
        )

    async def list_models(self) -> list[str]:
        """Model ids from ``GET /v1/models``: a cheap reachability and key check before spending."""
        session = self._get_session()
        try:
            async with session.get(self.base_url + "/models", allow_redirects=False) as response:
                if response.status != 200:
                    raise await self._refusal(response)
                raw = await self._read_body(response, 4 << 20)
        except CallError:
            raise
        except TimeoutError:
            raise self._error(TIMEOUT, f"{self.base_url}/models did not answer in time") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise self._error(CONNECTION, f"cannot reach {self.base_url}: {exc}") from None
        try:
            return [self._scrub.cut(str(item["id"]), _FIELD_LIMIT) for item in orjson.loads(raw)["data"]]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise self._error(BAD_RESPONSE, f"{self.base_url}/models: not a model list") from None


def classify_refusal(
    status: int, raw: bytes, scrub: KeyScrubber, headers: Mapping[str, str] | None = None
) -> CallError:
    """The error for a non-200 answer's body (online, or a batch's error line): scrubbed before it is cut."""
    error = classify_status(status, scrub.cut(raw, _ERROR_BODY_LIMIT), headers)
    error.message = scrub(error.message)
    return error


def checked_answer(response: ChatResponse, max_tokens: int, key: str | None) -> ChatResponse:
    """Refuse (CallError) an answer that holds the key or is longer than ``max_tokens`` tokens could be: the
    check every answer passes before it is written, online or from a batch's output file."""
    if key and (key in response.text or (response.reasoning is not None and key in response.reasoning)):
        raise CallError(
            KEY_ECHOED, "the answer contains the API key (the server echoed it): refused, not written"
        )
    chars = len(response.text) + (len(response.reasoning) if response.reasoning else 0)
    if chars > MAX_CHARS_PER_TOKEN * max_tokens + 1024:
        raise CallError(
            RESPONSE_TOO_LARGE,
            f"the answer has {chars:,} characters, more than max_tokens {max_tokens} tokens could hold",
        )
    return response


def request_body(request: ChatRequest, max_tokens_field: str = "max_tokens") -> dict[str, Any]:
    """The JSON body of a ``/v1/chat/completions`` call (online, or one line of a batch input file).

    ``max_tokens_field`` is ``max_completion_tokens`` for APIs that want it (OpenAI's reasoning models).
    """
    body: dict[str, Any] = {
        "model": request.model,
        "messages": request.messages,
        "temperature": request.temperature,
        max_tokens_field: request.max_tokens,
    }
    if request.extra_body:
        body.update(request.extra_body)
    return body


def text_field(value: Any) -> str | None:
    """A short text field of an answer (model, finish_reason): text, cut to 200 characters, else None."""
    return value[:_FIELD_LIMIT] if isinstance(value, str) else None


def parse_completion(
    data: Any, latency_ms: float, field: Callable[[Any], str | None] = text_field
) -> ChatResponse:
    """A decoded ``chat.completion`` object (an online answer's body, or a batch output line's) → ChatResponse.

    The answer comes from ``content``; a reasoning model's thinking from ``reasoning_content`` (or
    ``reasoning``). ``field`` cleans the short text fields (the online client also scrubs the key from them).
    Raises CallError: ``bad_response`` when it is not a completion, ``content_filter`` when the provider's
    filter stopped the answer, ``bad_usage`` when ``usage`` does not hold token counts.
    """
    try:
        choice = data["choices"][0]
        message = choice["message"]
        text = message.get("content") or ""
        reasoning = message.get("reasoning_content") or message.get("reasoning")
        finish_reason = choice.get("finish_reason")
        if not isinstance(text, str) or not (reasoning is None or isinstance(reasoning, str)):
            raise TypeError("content is not text")
    except (KeyError, IndexError, TypeError, AttributeError):
        raise CallError(BAD_RESPONSE, "not a chat completion") from None
    if finish_reason == "content_filter":
        raise CallError(CONTENT_FILTER, "the provider's content filter stopped the answer", status=200)
    return ChatResponse(
        text=text,
        finish_reason=field(finish_reason),
        usage=parse_usage(data.get("usage")),
        latency_ms=latency_ms,
        model=field(data.get("model")),
        reasoning=reasoning or None,
    )


def parse_usage(data: Any) -> Usage | None:
    """``usage`` as token counts (0 to a billion each), or CallError ``bad_usage`` naming the field: never a
    value that could break the ledger or the cost figures. Reasoning tokens a server reports apart from
    ``completion_tokens`` (more of them than completion tokens) are added to it: they are billed."""
    if data is None:
        return None
    if not isinstance(data, dict):
        raise CallError(BAD_USAGE, "usage is not an object")
    details = data.get("completion_tokens_details")
    try:
        prompt = _count(data, "prompt_tokens")
        completion = _count(data, "completion_tokens")
        reasoning = _count(details, "reasoning_tokens") if isinstance(details, dict) else 0
    except ValueError as problem:
        raise CallError(BAD_USAGE, str(problem)) from None
    if reasoning > completion:
        completion += reasoning
    return Usage(prompt, completion, reasoning)


def _count(data: dict, name: str) -> int:
    """A token count from ``data[name]`` (absent: 0); ValueError saying why a value is not one."""
    value = data.get(name)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_TOKEN_COUNT:
        shown = repr(value) if isinstance(value, int | float) and abs(value) < 1e30 else type(value).__name__
        raise ValueError(f"usage.{name} is not a token count (0 to {_MAX_TOKEN_COUNT:,}): {shown}")
    return value


def _error_text(error: Any) -> str:
    return str(error.get("message", error)) if isinstance(error, dict) else str(error)
