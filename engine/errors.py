"""What went wrong with a teacher call, as a class the dispatcher can act on: retry, give up, or stop the run.

Classification only, no I/O. Transient classes are retried with backoff; permanent ones become a failure
record at once; fatal ones (a bad key, an exhausted account, a wrong model name, a redirect) stop the whole
run because every later call would fail the same way and the user has to fix something first.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from typing import Any

import orjson

RATE_LIMITED = "rate_limited"
SERVER_ERROR = "server_error"
TIMEOUT = "timeout"
CONNECTION = "connection"
BAD_RESPONSE = "bad_response"  # truncated or non-JSON body, or JSON without a choice
BAD_REQUEST = "bad_request"
AUTH = "auth"
NOT_FOUND = "not_found"
CONTEXT_LENGTH = "context_length"
CONTENT_FILTER = "content_filter"
QUOTA_EXCEEDED = "quota_exceeded"  # OpenAI's 429 insufficient_quota: out of credit, waiting will not help
REDIRECT = "redirect"  # the server sent us elsewhere: never followed, the base_url is wrong
RESPONSE_TOO_LARGE = (
    "response_too_large"  # more bytes than max_response_bytes, or more text than max_tokens allows
)
BAD_USAGE = "bad_usage"  # `usage` with counts that are not token counts
KEY_ECHOED = "key_echoed"  # the answer contains the API key: refused, never written
ENDPOINTS_DOWN = "endpoints_down"  # every endpoint of a pool is out of service

ERROR_CLASSES = (
    RATE_LIMITED,
    SERVER_ERROR,
    TIMEOUT,
    CONNECTION,
    BAD_RESPONSE,
    BAD_REQUEST,
    AUTH,
    NOT_FOUND,
    CONTEXT_LENGTH,
    CONTENT_FILTER,
    QUOTA_EXCEEDED,
    REDIRECT,
    RESPONSE_TOO_LARGE,
    BAD_USAGE,
    KEY_ECHOED,
    ENDPOINTS_DOWN,
)
RETRYABLE_CLASSES = frozenset({RATE_LIMITED, SERVER_ERROR, TIMEOUT, CONNECTION, BAD_RESPONSE})
# Every later call would fail the same way: a refused key, no credit, a model or path that does not exist,
# a base_url that redirects.
FATAL_CLASSES = frozenset({AUTH, QUOTA_EXCEEDED, NOT_FOUND, REDIRECT, ENDPOINTS_DOWN})

_MESSAGE_LIMIT = 300
_CONTEXT_MARKERS = (
    "context_length_exceeded",
    "maximum context length",
    "context length",
    "too many tokens",
    "prompt is too long",
    "input is too long",
)
_FILTER_MARKERS = ("content_filter", "content_policy", "content management policy", "safety system")


class CallError(Exception):
    """One failed attempt. ``message`` never holds the API key (the client scrubs it before raising)."""

    def __init__(
        self,
        error_class: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.error_class = error_class
        self.message = message
        self.status = status
        self.retryable = error_class in RETRYABLE_CLASSES
        self.retry_after = retry_after

    @property
    def fatal(self) -> bool:
        return self.error_class in FATAL_CLASSES

    def __str__(self) -> str:
        return self.message  # the current message: the client scrubs it after construction

    def __repr__(self) -> str:
        return f"CallError({self.error_class!r}, status={self.status}, {self.message!r})"


def _error_fields(body: bytes | str | Mapping[str, Any] | None) -> tuple[str, str]:
    """(code-ish text, human message) from an OpenAI-style ``{"error": {...}}`` body, or the raw text."""
    if body is None:
        return "", ""
    data: Any = body
    if isinstance(body, bytes | str):
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
            return "", text.strip()[:_MESSAGE_LIMIT]
    error = data.get("error", data) if isinstance(data, Mapping) else data
    if isinstance(error, Mapping):
        code = " ".join(str(error.get(k) or "") for k in ("code", "type", "param"))
        message = str(error.get("message") or error.get("detail") or "")
        return code.lower(), message[:_MESSAGE_LIMIT]
    return "", str(error)[:_MESSAGE_LIMIT]


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` (OpenAI) or ``retry-after`` (seconds or an HTTP date)."""
    if not headers:
        return None
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def classify_status(
    status: int,
    body: bytes | str | Mapping[str, Any] | None,
    headers: Mapping[str, str] | None = None,
) -> CallError:
    """The error for a non-2xx answer. A 400 that says the context is too long is ``context_length``, etc."""
    code, message = _error_fields(body)
    text = f"{code} {message}".lower()
    retry_after = parse_retry_after(headers)
    summary = f"HTTP {status}" + (f": {message}" if message else "")
    if status == 429:
        if "insufficient_quota" in text or "quota" in code:
            return CallError(QUOTA_EXCEEDED, summary, status=status)
        return CallError(RATE_LIMITED, summary, status=status, retry_after=retry_after)
    if status in (401, 403):
        return CallError(AUTH, summary, status=status)
    if status == 404 or "model_not_found" in code:
        return CallError(NOT_FOUND, summary, status=status)
    if status == 413 or any(marker in text for marker in _CONTEXT_MARKERS):
        return CallError(CONTEXT_LENGTH, summary, status=status)
    if any(marker in text for marker in _FILTER_MARKERS):
        return CallError(CONTENT_FILTER, summary, status=status)
    # 408 request timeout and 409 conflict are transient by OpenAI's own retry rules.
    if status == 408:
        return CallError(TIMEOUT, summary, status=status, retry_after=retry_after)
    if status == 409 or status >= 500:
        return CallError(SERVER_ERROR, summary, status=status, retry_after=retry_after)
    return CallError(BAD_REQUEST, summary, status=status)
