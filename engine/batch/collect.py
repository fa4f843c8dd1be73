"""A batch's output and error files → records, through the same writer online answers go through.

Each line is untrusted, and passes the online client's own checks: it is bounded in size (one answer's byte
limit, derived from ``max_tokens``, plus the line's envelope; a longer line is refused unread, as
``response_too_large``), decoded, matched to a request this batch file really holds (by ``custom_id``), and
turned into the ``ChatResponse`` or ``CallFailure`` the online client would have produced: every text the
provider wrote is scrubbed of the API key before it is cut, an answer that holds the key is refused
(``key_echoed``) and one longer than ``max_tokens`` tokens could be is refused (``response_too_large``),
``usage`` must hold token counts (``bad_usage``). The writer then parses, filters, dedupes and stores it
exactly as it does online answers. A line whose request already has a record (a collection resumed after a
crash) is skipped, so a record is never written twice. Requests the provider never ran (``batch_expired``,
``batch_cancelled``) get no record: they are sent again.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson
from distill.engine.batch.plan import IndexEntry
from distill.engine.client import (
    KeyScrubber,
    checked_answer,
    classify_refusal,
    parse_completion,
    response_byte_limit,
)
from distill.engine.errors import BAD_RESPONSE, RESPONSE_TOO_LARGE, SERVER_ERROR, CallError
from distill.engine.inputs import RowLookup
from distill.engine.prompts import build_instruction
from distill.engine.types import CallFailure, ChatRequest, ChatResponse, Job

from distill.endpoint import Endpoint
from distill.errors import UserError

# Error codes of requests the provider did not run: they are sent again, not recorded as failures.
NOT_RUN_CODES = frozenset({"batch_expired", "batch_cancelled"})
# What a result line holds besides the answer itself: ids, status, the completion's envelope.
LINE_ENVELOPE_BYTES = 64 * 1024
_MESSAGE_LIMIT = 300
_YIELD_EVERY = 2000  # lines between two returns to the event loop, so progress and polls keep running
_READ_CHUNK = 1 << 20
# Where a line too long to read names its request: OpenAI writes "id" and "custom_id" first.
_CUSTOM_ID = re.compile(rb'"custom_id"\s*:\s*"([A-Za-z0-9_-]{1,64})"')
_CUSTOM_ID_WINDOW = 4096

ResultSink = Callable[[Job, ChatResponse | CallFailure], None]


@dataclass
class CollectCounts:
    records: int = 0  # lines that became a record now
    already: int = 0  # lines whose request already had a record
    not_run: int = 0  # expired or cancelled before they ran
    unexpected: int = 0  # a custom_id this batch file does not hold
    malformed: int = 0  # not a result line at all
    too_large: int = 0  # longer than the line bound: refused unread (a failure record when its id is found)

    def add(self, other: CollectCounts) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


def result_of(
    item: Any, latency_ms: float, max_tokens: int, scrub: KeyScrubber
) -> ChatResponse | CallFailure | None:
    """One decoded result line → what the online client would have returned (after the same checks); None
    when the provider never ran the request."""
    if not isinstance(item, dict):
        return CallFailure(BAD_RESPONSE, "a result line that is not an object")
    response, error = item.get("response"), item.get("error")
    if isinstance(response, dict):
        status = response.get("status_code")
        body = response.get("body")
        if status == 200:
            try:
                return checked_answer(parse_completion(body, latency_ms, scrub.field), max_tokens, scrub.key)
            except CallError as exc:
                return CallFailure(
                    exc.error_class, scrub.cut(exc.message, _MESSAGE_LIMIT), 200, 1, exc.retryable
                )
        if isinstance(status, int) and not isinstance(status, bool):
            exc = classify_refusal(status, orjson.dumps(body) if isinstance(body, dict) else b"", scrub)
            return CallFailure(exc.error_class, exc.message[:_MESSAGE_LIMIT], status, 1, exc.retryable)
    if isinstance(error, dict):
        code = str(error.get("code") or "")
        if code in NOT_RUN_CODES:
            return None
        message = scrub.cut(f"{code}: {error.get('message') or ''}", _MESSAGE_LIMIT)
        return CallFailure(SERVER_ERROR, message, None, 1, True)
    return CallFailure(BAD_RESPONSE, "a result line with neither a response nor an error")


def bounded_lines(handle: IO[bytes], limit: int) -> Iterator[tuple[bytes, bool]]:
    """Each line of ``handle`` as ``(line, whole)``: a line longer than ``limit`` bytes comes as its first
    ``limit`` bytes with ``whole`` False, and the rest of it is read past in chunks, never held."""
    while True:
        line = handle.readline(limit + 1)
        if not line:
            return
        if len(line) <= limit:
            yield line, True
            continue
        head = line[:limit]
        while not line.endswith(b"\n"):
            line = handle.readline(_READ_CHUNK)
            if not line:
                break
        yield head, False


class Collector:
    """Turns result lines into (job, result) pairs for the record writer, reading inputs back by offset."""

    def __init__(
        self,
        *,
        lookup: RowLookup,
        task: str,
        model: str,
        max_tokens: int,
        write: ResultSink,
        done: set[int],
        scrub: KeyScrubber,
        max_line_bytes: int,
    ) -> None:
        self.lookup = lookup
        self.task = task
        self.model = model
        self.max_tokens = max_tokens
        self.write = write
        self.done = done
        self.scrub = scrub
        self.max_line_bytes = max_line_bytes

    def job_for(self, custom_id: str, entry: IndexEntry) -> Job:
        row = self.lookup.row(entry.offset, entry.line)
        if row.id != entry.row_id:
            raise UserError(
                f"line {entry.line} of the input now holds id {row.id!r}, not {entry.row_id!r}: the input file "
                "changed while batches were running; restore it to collect their answers"
            )
        request = ChatRequest(
            messages=[],
            model=self.model,
            temperature=entry.temperature,
            max_tokens=self.max_tokens,
            request_id=custom_id,
        )
        return Job(
            (row.id, entry.sample_index), request, 0, {"instruction": build_instruction(self.task, row.text)}
        )

    async def collect(self, path: Path, index: dict[str, IndexEntry], latency_ms: float) -> CollectCounts:
        """Every line of one downloaded result file."""
        counts = CollectCounts()
        with path.open("rb") as handle:
            lines = bounded_lines(handle, self.max_line_bytes)
            for number, (raw, whole) in enumerate(lines, start=1):
                if number % _YIELD_EVERY == 0:
                    await asyncio.sleep(0)
                if not whole:
                    counts.too_large += 1
                    found = _CUSTOM_ID.search(raw[:_CUSTOM_ID_WINDOW])
                    custom_id = found.group(1).decode() if found else None
                    if custom_id is not None and self._pending(custom_id, index, counts):
                        self._write(custom_id, index, self._too_large(path, number), counts)
                    continue
                if not raw.strip():
                    counts.malformed += 1
                    continue
                try:
                    item = orjson.loads(raw)
                    custom_id = item["custom_id"]
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    counts.malformed += 1
                    continue
                if self._pending(custom_id, index, counts):
                    result = result_of(item, latency_ms, self.max_tokens, self.scrub)
                    if result is None:
                        counts.not_run += 1
                    else:
                        self._write(custom_id, index, result, counts)
        return counts

    def _pending(self, custom_id: Any, index: dict[str, IndexEntry], counts: CollectCounts) -> bool:
        """Whether ``custom_id`` is a request of this file still without a record (else counted as why not)."""
        if not isinstance(custom_id, str) or custom_id not in index:
            counts.unexpected += 1
            return False
        if int(custom_id, 16) in self.done:
            counts.already += 1
            return False
        return True

    def _write(
        self,
        custom_id: str,
        index: dict[str, IndexEntry],
        result: ChatResponse | CallFailure,
        counts: CollectCounts,
    ) -> None:
        self.write(self.job_for(custom_id, index[custom_id]), result)
        self.done.add(int(custom_id, 16))
        counts.records += 1

    def _too_large(self, path: Path, number: int) -> CallFailure:
        return CallFailure(
            RESPONSE_TOO_LARGE,
            f"line {number} of the batch result {path.name} is longer than the {self.max_line_bytes:,} bytes "
            "one answer may take (max_response_bytes; by default 1 MiB + 512 bytes per max_tokens token): "
            "refused unread",
        )


def line_byte_limit(endpoint: Endpoint, max_tokens: int) -> int:
    """Bytes one result line may take: one answer's limit (as online) plus the line's envelope."""
    return response_byte_limit(endpoint, max_tokens) + LINE_ENVELOPE_BYTES
