"""OpenAI's Files and Batches API (and every provider that copies it), through the ``openai`` SDK.

The SDK's own retries are off: a retried ``batches.create`` after a timeout could create a second batch.
Reads (retrieve, list, download) are retried here with backoff; a create is tried once, and the driver
looks for it in the provider's list (by metadata) before it ever tries again.

Every message this module raises is scrubbed of the API key.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import openai
from distill.engine.batch.journal import ENDED
from distill.engine.client import KeyScrubber, classify_refusal, parse_usage
from distill.engine.errors import AUTH, QUOTA_EXCEEDED, CallError
from openai import AsyncOpenAI
from openai.types import Batch, FileObject

T = TypeVar("T")

# Batches and files older than this before our intent cannot be ours: stop paging the provider's list there.
_LIST_MARGIN_S = 24 * 3600
_BACKOFF_BASE_S = 0.5
_BACKOFF_MAX_S = 30.0
_CHUNK = 1 << 20
_NO_KEY = "no-key"  # the SDK insists on a key; a local server without one ignores it
_ERROR_LIMIT = 300  # characters of a batch's error kept in the journal and in failure records
_MAX_COUNT = (
    1 << 53
)  # beyond this a "count" is not one (and would not survive the journal's JSON as a number)


class ProviderError(Exception):
    """A files/batches call that failed for good. ``fatal``: every later call would fail the same way."""

    def __init__(self, message: str, *, fatal: bool = False, transient: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.fatal = fatal
        self.transient = transient


class OpenAIBatches:
    """The provider calls batch mode makes; ``max_concurrent`` of them run at once."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        headers: dict[str, str] | None = None,
        timeout_s: float = 300.0,
        max_concurrent: int = 8,
        call_attempts: int = 6,
        download_attempts: int = 5,
    ) -> None:
        self._key = api_key or None
        self.scrub = KeyScrubber(self._key)  # the online client's: the key and any 8-character piece of it
        self.client = AsyncOpenAI(
            base_url=base_url,
            api_key=api_key or _NO_KEY,
            max_retries=0,
            timeout=timeout_s,
            default_headers=headers or None,
        )
        self._slots = asyncio.Semaphore(max_concurrent)
        self.call_attempts = call_attempts
        self.download_attempts = download_attempts

    def __repr__(self) -> str:
        return f"OpenAIBatches({str(self.client.base_url)!r}, api_key={'***' if self._key else None})"

    async def close(self) -> None:
        await self.client.close()

    # -- errors -----------------------------------------------------------------------------------------

    def _error(self, what: str, exc: Exception) -> ProviderError:
        if isinstance(exc, openai.APIStatusError):
            body = exc.body if isinstance(exc.body, dict) else {"message": exc.message}
            raw = json.dumps({"error": body} if "error" not in body else body, default=str).encode()
            error = classify_refusal(exc.status_code, raw, self.scrub)  # scrubbed before it is cut
            return ProviderError(
                self.scrub(f"{what}: {error.message}"),
                fatal=error.error_class in (AUTH, QUOTA_EXCEEDED),
                transient=error.retryable,
            )
        if isinstance(exc, openai.APIError):  # connection refused, timeout, unreadable answer
            return ProviderError(self.scrub(f"{what}: {type(exc).__name__}: {exc}"), transient=True)
        return ProviderError(self.scrub(f"{what}: {type(exc).__name__}: {exc}"), transient=True)

    async def _call(self, what: str, call: Callable[[], Awaitable[T]], *, attempts: int | None = None) -> T:
        """One API call under the concurrency limit, retried with backoff while the error is transient."""
        attempts = attempts or self.call_attempts
        for attempt in range(1, attempts + 1):
            try:
                async with self._slots:
                    return await call()
            except (openai.APIError, OSError) as exc:
                error = self._error(what, exc)
                if not error.transient or attempt == attempts:
                    raise error from None
            await asyncio.sleep(_backoff(attempt))
        raise AssertionError("unreachable")

    # -- files ------------------------------------------------------------------------------------------

    async def find_file(self, filename: str, size: int, since: float) -> str | None:
        """The id of an uploaded batch file named ``filename`` of ``size`` bytes, made after ``since``."""

        async def search() -> str | None:
            async for item in self.client.files.list(purpose="batch", order="desc"):
                if item.created_at < since - _LIST_MARGIN_S:
                    return None
                if item.filename == filename and item.bytes == size:
                    return item.id
            return None

        return await self._call(f"listing files to find {filename}", search)

    async def upload(self, path: Path, filename: str) -> FileObject:
        """Upload a batch input file (streamed from disk by the SDK)."""

        async def upload() -> FileObject:
            with path.open("rb") as handle:
                return await self.client.files.create(file=(filename, handle), purpose="batch")

        return await self._call(f"uploading {filename}", upload)

    async def download(self, file_id: str, destination: Path, max_bytes: int) -> int:
        """Stream a result file to ``destination``; a download cut short (fewer bytes than the provider says the
        file has) is thrown away and fetched again. A file said to hold more than ``max_bytes`` is refused unread,
        and one that streams more than it said is cut off. Returns the byte count."""
        expected = (
            await self._call(f"looking up file {file_id}", lambda: self.client.files.retrieve(file_id))
        ).bytes
        if expected > max_bytes:
            raise ProviderError(
                self.scrub(
                    f"result file {file_id}: the provider says it holds {expected:,} bytes, more than its results "
                    f"can need ({max_bytes:,} bytes); not downloaded"
                )
            )
        partial = destination.with_name(destination.name + ".part")
        last = ""
        for attempt in range(1, self.download_attempts + 1):
            received = 0
            try:
                async with (
                    self._slots,
                    self.client.files.with_streaming_response.content(file_id) as response,
                ):
                    with partial.open("wb") as handle:
                        async for chunk in response.iter_bytes(_CHUNK):
                            received += len(chunk)
                            if received > expected:
                                raise ValueError(f"more than the {expected:,} bytes the file is said to have")
                            handle.write(chunk)
                        handle.flush()
                        os.fsync(handle.fileno())
                if received == expected:
                    os.replace(partial, destination)
                    return received
                last = f"cut off at {received:,} of {expected:,} bytes"
            except openai.APIStatusError as exc:
                error = self._error(f"downloading file {file_id}", exc)
                if not error.transient:
                    raise error from None
                last = error.message
            except Exception as exc:  # the transport's own errors for a body cut short, a reset, a timeout
                last = f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(_backoff(attempt))
        partial.unlink(missing_ok=True)
        raise ProviderError(
            self.scrub(f"downloading file {file_id}: {last} ({self.download_attempts} tries)"), transient=True
        )

    # -- batches ----------------------------------------------------------------------------------------

    async def find_batch(self, metadata: dict[str, str], since: float) -> Batch | None:
        """The batch whose metadata holds ``metadata``, created after ``since`` (the provider lists newest
        first, so the search stops at the first older one)."""

        async def search() -> Batch | None:
            async for batch in self.client.batches.list(limit=100):
                if batch.created_at < since - _LIST_MARGIN_S:
                    return None
                found = batch.metadata or {}
                if all(found.get(key) == value for key, value in metadata.items()):
                    return batch
            return None

        return await self._call("listing batches", search)

    async def create(self, file_id: str, metadata: dict[str, str], completion_window: str) -> Batch:
        """Create a batch: ONE try. If it fails the batch may exist anyway; the caller looks before retrying."""
        return await self._call(
            f"creating a batch for file {file_id}",
            lambda: self.client.batches.create(
                input_file_id=file_id,
                endpoint="/v1/chat/completions",
                completion_window=completion_window,  # type: ignore[arg-type]
                metadata=metadata,
            ),
            attempts=1,
        )

    async def retrieve(self, batch_id: str) -> Batch:
        return await self._call(
            f"looking up batch {batch_id}", lambda: self.client.batches.retrieve(batch_id)
        )

    async def cancel(self, batch_id: str) -> Batch:
        return await self._call(f"cancelling batch {batch_id}", lambda: self.client.batches.cancel(batch_id))


def _backoff(attempt: int) -> float:
    return random.uniform(0.5, 1.0) * min(_BACKOFF_MAX_S, _BACKOFF_BASE_S * 2 ** (attempt - 1))


def batch_summary(batch: Batch, scrub: KeyScrubber) -> dict[str, Any]:
    """The parts of a provider's batch object the journal keeps, as untrusted as any answer: texts scrubbed of
    the key and cut, counts that are not counts dropped (``usage`` checked as an answer's is)."""
    counts = batch.request_counts
    usage = None
    if batch.usage is not None:
        try:
            parsed = parse_usage(
                {"prompt_tokens": batch.usage.input_tokens, "completion_tokens": batch.usage.output_tokens}
            )
        except CallError:
            parsed = None  # money is counted from each answer's own usage, checked there
        if parsed is not None:
            usage = {"prompt_tokens": parsed.prompt_tokens, "completion_tokens": parsed.completion_tokens}
    return {
        "status": scrub.field(batch.status),
        "request_counts": {
            "total": _request_count(counts.total),
            "completed": _request_count(counts.completed),
            "failed": _request_count(counts.failed),
        }
        if counts
        else {},
        "output_file_id": scrub.field(batch.output_file_id),
        "error_file_id": scrub.field(batch.error_file_id),
        "usage": usage,
        "error": _first_error(batch, scrub),
        "turnaround_s": _turnaround(batch) if batch.status in ENDED else None,
    }


def _turnaround(batch: Batch) -> float | None:
    """Seconds from the batch's creation to its end, as the provider stamps them; None if a stamp is not one."""
    stamps = [batch.completed_at, batch.failed_at, batch.expired_at, batch.cancelled_at]
    ends = [stamp for stamp in stamps if _is_stamp(stamp) and stamp]
    if not ends or not _is_stamp(batch.created_at):
        return None
    return float(max(ends) - batch.created_at)


def _is_stamp(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < _MAX_COUNT


def _request_count(value: Any) -> int:
    """A request count as the journal may hold it: a number of requests, else 0 (it only feeds progress)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < _MAX_COUNT else 0


def _first_error(batch: Batch, scrub: KeyScrubber) -> str | None:
    """Why a batch failed (its first validation error), scrubbed then cut short; None when it did not."""
    errors = batch.errors.data if batch.errors and batch.errors.data else None
    if not errors:
        return None
    first = errors[0]
    where = f" (line {first.line})" if isinstance(first.line, int) and first.line else ""
    return scrub.cut(f"{first.code or 'error'}: {first.message or ''}{where}", _ERROR_LIMIT)
