"""A batch's output and error files → records, through the same writer online answers go through.

Each line is untrusted: it is bounded in size, decoded, matched to a request this batch file really holds
(by ``custom_id``), and turned into the ``ChatResponse`` or ``CallFailure`` the online client would have
produced; the writer then parses, filters, dedupes and stores it exactly as it does online answers. A line
whose request already has a record (a collection resumed after a crash) is skipped, so a record is never
written twice. Requests the provider never ran (``batch_expired``, ``batch_cancelled``) get no record: they
are sent again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from distill.engine.batch.plan import IndexEntry
from distill.engine.client import parse_completion
from distill.engine.errors import BAD_RESPONSE, SERVER_ERROR, CallError, classify_status
from distill.engine.inputs import RowLookup
from distill.engine.prompts import build_instruction
from distill.engine.types import CallFailure, ChatRequest, ChatResponse, Job

from distill.errors import UserError

# Error codes of requests the provider did not run: they are sent again, not recorded as failures.
NOT_RUN_CODES = frozenset({"batch_expired", "batch_cancelled"})
MAX_LINE_BYTES = 64 * 1024 * 1024
_MESSAGE_LIMIT = 300
_YIELD_EVERY = 2000  # lines between two returns to the event loop, so progress and polls keep running

ResultSink = Callable[[Job, ChatResponse | CallFailure], None]


@dataclass
class CollectCounts:
    records: int = 0  # lines that became a record now
    already: int = 0  # lines whose request already had a record
    not_run: int = 0  # expired or cancelled before they ran
    unexpected: int = 0  # a custom_id this batch file does not hold
    malformed: int = 0  # not a result line at all

    def add(self, other: CollectCounts) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


def result_of(item: Any, latency_ms: float) -> ChatResponse | CallFailure | None:
    """One decoded result line → what the online client would have returned; None when it never ran."""
    if not isinstance(item, dict):
        return CallFailure(BAD_RESPONSE, "a result line that is not an object")
    response, error = item.get("response"), item.get("error")
    if isinstance(response, dict):
        status = response.get("status_code")
        body = response.get("body")
        if status == 200:
            try:
                return parse_completion(body, latency_ms)
            except CallError as exc:
                return CallFailure(exc.error_class, exc.message, 200, 1, exc.retryable)
        if isinstance(status, int) and not isinstance(status, bool):
            exc = classify_status(status, body if isinstance(body, dict) else None)
            return CallFailure(exc.error_class, exc.message[:_MESSAGE_LIMIT], status, 1, exc.retryable)
    if isinstance(error, dict):
        code = str(error.get("code") or "")
        if code in NOT_RUN_CODES:
            return None
        message = f"{code}: {error.get('message') or ''}"[:_MESSAGE_LIMIT]
        return CallFailure(SERVER_ERROR, message, None, 1, True)
    return CallFailure(BAD_RESPONSE, "a result line with neither a response nor an error")


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
        scrub: Callable[[str], str] = str,
    ) -> None:
        self.lookup = lookup
        self.task = task
        self.model = model
        self.max_tokens = max_tokens
        self.write = write
        self.done = done
        self.scrub = scrub

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
            for number, raw in enumerate(handle, start=1):
                if number % _YIELD_EVERY == 0:
                    await asyncio.sleep(0)
                if len(raw) > MAX_LINE_BYTES or not raw.strip():
                    counts.malformed += 1
                    continue
                try:
                    item = orjson.loads(raw)
                    custom_id = item["custom_id"]
                    entry = index.get(custom_id) if isinstance(custom_id, str) else None
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    counts.malformed += 1
                    continue
                if entry is None:
                    counts.unexpected += 1
                    continue
                key = int(custom_id, 16)
                if key in self.done:
                    counts.already += 1
                    continue
                result = result_of(item, latency_ms)
                if result is None:
                    counts.not_run += 1
                    continue
                if isinstance(result, CallFailure):
                    result.message = self.scrub(result.message)
                self.write(self.job_for(custom_id, entry), result)
                self.done.add(key)
                counts.records += 1
        return counts
