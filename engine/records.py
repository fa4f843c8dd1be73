"""The dispatcher's `on_result`: one answer (or final failure) → one record on disk, synchronously.

Exactly-once rests on this callback doing all its I/O without awaiting: the record line, then its ledger
entry, each a single `os.write`. When it returns, both are in the kernel, so `kill -9` at any moment loses
at most a torn line (repaired on resume, and its request re-sent) and never writes a key twice.

Record fields (docs/engine.md): id, sample_index, instruction, thinking, output, full_output, source_model,
generated_at, temperature, usage {prompt_tokens, completion_tokens}, latency_ms, finish_reason; rejected
records add reject_reason (and the raw `response` when it could not be parsed); failure records hold id,
sample_index, error_class, message, status, attempts, failed_at.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime

import orjson
from distill.engine import filters
from distill.engine.cost import CostMeter
from distill.engine.filters import QualityFilter
from distill.engine.jobs import RowWatermark
from distill.engine.parsing import format_full_output, parse_cot
from distill.engine.resume import FAILED, REASON_CODES, Ledger, record_key
from distill.engine.shards import ShardSet
from distill.engine.types import CallFailure, ChatResponse, Job

_DUMP_OPTIONS = orjson.OPT_APPEND_NEWLINE
_WATERMARK_EVERY = 512  # results between watermark entries: cheap, and a resume rescans at most this many


class RunStats:
    """Live counters of this session, for the progress display and the summary."""

    def __init__(self, total: int, finished_before: int) -> None:
        self.total = total
        self.finished_before = finished_before
        self.accepted = 0
        self.rejected: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.started = time.perf_counter()

    @property
    def finished(self) -> int:
        """Records written by this session."""
        return self.accepted + sum(self.rejected.values()) + sum(self.failed.values())

    @property
    def done(self) -> int:
        return self.finished_before + self.finished

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class RecordWriter:
    """Callable passed to `dispatch` as on_result."""

    def __init__(
        self,
        *,
        shards: ShardSet,
        ledger: Ledger,
        quality: QualityFilter,
        cost: CostMeter,
        stats: RunStats,
        watermark: RowWatermark,
        source_model: str,
        reject_truncated: bool,
        stop: asyncio.Event,
    ) -> None:
        self.shards = shards
        self.ledger = ledger
        self.quality = quality
        self.cost = cost
        self.stats = stats
        self.watermark = watermark
        self.source_model = source_model
        self.reject_truncated = reject_truncated
        self.stop = stop
        self.budget_reached = False
        self.closed = False  # set when the run is abandoned: results arriving after that are not written
        self._since_watermark = 0
        self._watermark_written = ledger.watermark

    def __call__(self, job: Job, result: ChatResponse | CallFailure) -> None:
        if self.closed:
            return
        row_id, sample_index = job.key
        if isinstance(result, CallFailure):
            self._failure(row_id, sample_index, result)
        else:
            self._answer(job, row_id, sample_index, result)
        self.watermark.finished(row_id)
        self._since_watermark += 1
        if self._since_watermark >= _WATERMARK_EVERY:
            self.flush_watermark()
        if self.cost.over_budget and not self.stop.is_set():
            self.budget_reached = True
            self.stop.set()

    def _answer(self, job: Job, row_id: str, sample_index: int, response: ChatResponse) -> None:
        usage = response.usage
        prompt_tokens = usage.prompt_tokens if usage else 0
        completion_tokens = usage.completion_tokens if usage else 0
        instruction = job.meta["instruction"]
        parsed = parse_cot(response.text)
        reason = output_hash = None
        if self.reject_truncated and response.finish_reason == "length":
            reason = filters.TRUNCATED
        elif parsed is None:
            # A bare refusal has no markers either; naming it a refusal is the more useful count.
            reason = filters.REFUSAL if self.quality.is_refusal(response.text) else filters.FORMAT
        else:
            reason, output_hash = self.quality.judge(instruction, parsed[1])
        thinking, output = parsed if parsed is not None else (None, None)
        record = {
            "id": row_id,
            "sample_index": sample_index,
            "instruction": instruction,
            "thinking": thinking,
            "output": output,
            "full_output": format_full_output(thinking, output) if parsed is not None else None,
            "source_model": response.model or self.source_model,
            "generated_at": _utc_now(),
            "temperature": job.request.temperature,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens},
            "latency_ms": round(response.latency_ms, 1),
            "finish_reason": response.finish_reason,
        }
        if reason is None:
            kind, code = "accepted", "a"
        else:
            kind, code, output_hash = "rejected", REASON_CODES[reason], None
            record["reject_reason"] = reason
            if parsed is None:
                record["response"] = response.text
        self._commit(kind, record, row_id, sample_index, code, output_hash, prompt_tokens, completion_tokens)
        self.cost.add(prompt_tokens, completion_tokens)
        if reason is None:
            self.stats.accepted += 1
        else:
            self.stats.rejected[reason] += 1

    def _failure(self, row_id: str, sample_index: int, failure: CallFailure) -> None:
        record = {
            "id": row_id,
            "sample_index": sample_index,
            "error_class": failure.error_class,
            "message": failure.message,
            "status": failure.status,
            "attempts": failure.attempts,
            "failed_at": _utc_now(),
        }
        self._commit("failed", record, row_id, sample_index, FAILED, None, 0, 0)
        self.stats.failed[failure.error_class] += 1

    def _commit(
        self,
        kind: str,
        record: dict,
        row_id: str,
        sample_index: int,
        code: str,
        output_hash: int | None,
        prompt_tokens: int,
        completion_tokens: int,
    ) -> None:
        """Record line, then ledger entry. If the entry cannot be written, no further record may be either:
        only the last record of a shard may lack its entry, or `reconcile` could not restore it."""
        self.shards.write(kind, orjson.dumps(record, option=_DUMP_OPTIONS))
        try:
            self.ledger.add(
                record_key(row_id, sample_index), code, output_hash, prompt_tokens, completion_tokens
            )
        except OSError as exc:
            self.shards.broken = exc
            raise

    def flush_watermark(self) -> None:
        """Store the watermark if it moved (also called once at the end of the run)."""
        self._since_watermark = 0
        position = self.watermark.position()
        if position != self._watermark_written:
            try:
                self.ledger.mark_watermark(*position)
            except OSError as exc:
                self.shards.broken = exc
                raise
            self._watermark_written = position
