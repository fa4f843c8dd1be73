"""The dispatcher's `on_result`: one answer (or final failure) → one record on disk, synchronously.

Exactly-once rests on this callback doing all its I/O without awaiting: the record line, then its ledger
entry, each a single `os.write`. When it returns, both are in the kernel, so `kill -9` at any moment loses
at most a torn line (repaired on resume, and its request re-sent) and never writes a key twice.

The lines written here are the record contract of `engine.records` (a test validates them against it); they
are built as plain dicts and dumped with orjson because this runs once per answer on the hot path.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import orjson
from distill.engine import filters
from distill.engine.cost import CostMeter
from distill.engine.filters import QualityFilter
from distill.engine.ledger import ACCEPTED, FAILED, REJECTED, Ledger, clamp_u32, row_hash
from distill.engine.parsing import format_full_output, parse_cot
from distill.engine.records import record_key
from distill.engine.resume import ResumePosition
from distill.engine.shards import ShardSet
from distill.engine.types import CallFailure, ChatResponse, Job

_DUMP_OPTIONS = orjson.OPT_APPEND_NEWLINE


class RunStats:
    """Live counters of this session, for the progress display and the summary."""

    def __init__(self, total: int, finished_before: int) -> None:
        self.total = total
        self.finished_before = finished_before
        self.accepted = 0
        self.rejected: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        # Self-consistency, inputs compared in this session: how many, the sum of their majority shares, flagged.
        self.agreement_inputs = 0
        self.agreement_sum = 0.0
        self.agreement_flagged = 0
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


_second: list = [
    0,
    "",
]  # the last whole second formatted, and its text: one strftime per second, not per record


def _utc_now() -> str:
    """ISO 8601 UTC with milliseconds, as `datetime.isoformat` writes it, at a fraction of its cost."""
    now = time.time()
    second = int(now)
    if second != _second[0]:
        _second[0], _second[1] = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
    return f"{_second[1]}.{int((now - second) * 1000):03d}Z"


def _split(
    response: ChatResponse, whole_reply_is_answer: bool = False
) -> tuple[tuple[str, str] | None, str | None]:
    """(thinking, answer) and where the thinking came from: ``field`` when a reasoning model sent it apart
    (``reasoning_content`` / ``reasoning``; the answer is then the content, after its own answer marker if it
    wrote one), ``markers`` when the content holds 【思考过程】…【最终答案】 (or the English markers), ``none``
    when structured output makes the whole reply the answer."""
    parsed = parse_cot(response.text)
    reasoning = response.reasoning.strip() if response.reasoning else ""
    if not reasoning:
        if parsed is None and whole_reply_is_answer and response.text.strip():
            return ("", response.text.strip()), "none"
        return parsed, "markers" if parsed is not None else None
    answer = parsed[1] if parsed is not None else response.text.strip()
    return ((reasoning, answer) if answer else None), "field"


@dataclass(slots=True)
class _Answer:
    """One answer's record and verdict, before it is written."""

    record: dict[str, Any]
    reason: str | None
    answer_hash: int | None
    row: int
    prompt_tokens: int
    completion_tokens: int


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
        position: ResumePosition,
        source_model: str,
        reject_truncated: bool,
        stop: asyncio.Event,
        target_accepted: int | None = None,
        agreement: bool = False,
        min_agreement: float = 0.5,
        whole_reply_is_answer: bool = False,
    ) -> None:
        self.shards = shards
        self.ledger = ledger
        self.quality = quality
        self.cost = cost
        self.stats = stats
        self.position = position
        self.source_model = source_model
        self.reject_truncated = reject_truncated
        self.whole_reply_is_answer = whole_reply_is_answer  # structured output: no markers to split by
        self.stop = stop
        self.budget_reached = False
        self.target_accepted = target_accepted
        self.agreement = agreement
        self.min_agreement = min_agreement
        self._held: dict[str, list[tuple[Job, ChatResponse | CallFailure]]] = {}
        self.closed = False  # set when the run is abandoned: results arriving after that are not written

    def __call__(self, job: Job, result: ChatResponse | CallFailure) -> None:
        if self.closed:
            return
        row_id, sample_index = job.key
        if self.agreement:
            # Self-consistency needs every sample of a row: hold them (in memory, at most the in-flight ones)
            # until the last arrives, then write them together.
            held = self._held.setdefault(row_id, [])
            held.append((job, result))
            if len(held) >= self.position.outstanding(row_id):
                self._write_row(row_id)
        else:
            if isinstance(result, CallFailure):
                self._failure(row_id, sample_index, result)
            else:
                self._write_answer(self._assess(job, result))
            self._finished(row_id)
        if self.cost.over_budget and not self.stop.is_set():
            self.budget_reached = True
            self.stop.set()
        if self.target_accepted is not None and not self.stop.is_set() and self.target_reached():
            self.stop.set()

    def _finished(self, row_id: str) -> None:
        try:
            self.position.finished(row_id)
        except OSError as exc:
            self.shards.broken = exc
            raise

    def target_reached(self) -> bool:
        """``target_accepted`` records passed every filter, in this run directory (earlier starts included)."""
        return self.target_accepted is not None and self.ledger.count(ACCEPTED) >= self.target_accepted

    def _assess(self, job: Job, response: ChatResponse, *, dedupe: bool = True) -> _Answer:
        """The record of one answer and its verdict (reason None: accepted so far)."""
        row_id, sample_index = job.key
        usage = response.usage
        # Clamped here too, so the record always fits its contract (usage counts are never negative).
        prompt_tokens = clamp_u32(usage.prompt_tokens) if usage else 0
        completion_tokens = clamp_u32(usage.completion_tokens) if usage else 0
        instruction = job.meta["instruction"]
        parsed, thinking_source = _split(response, self.whole_reply_is_answer)
        row = row_hash(row_id)
        reason = answer_hash = None
        if self.reject_truncated and response.finish_reason == "length":
            reason = filters.TRUNCATED
        elif parsed is None:
            # A bare refusal has no markers either; naming it a refusal is the more useful count.
            reason = filters.REFUSAL if self.quality.is_refusal(response.text) else filters.FORMAT
        elif dedupe:
            reason, answer_hash = self.quality.judge(instruction, parsed[1], row)
        else:
            reason = self.quality.screen(instruction, parsed[1])
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
            "latency_ms": round(max(response.latency_ms, 0.0), 1),
            "finish_reason": response.finish_reason,
        }
        if thinking_source is not None:
            record["thinking_source"] = thinking_source
        if parsed is None:
            record["response"] = response.text
        return _Answer(record, reason, answer_hash, row, prompt_tokens, completion_tokens)

    def _write_answer(self, answer: _Answer) -> None:
        record, reason = answer.record, answer.reason
        row_id, sample_index = record["id"], record["sample_index"]
        tokens = {"prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.completion_tokens}
        if reason is None:
            record.pop("response", None)
            self._commit(
                ACCEPTED,
                record,
                row_id,
                sample_index,
                answer_hash=answer.answer_hash or 0,
                row=answer.row,
                **tokens,
            )
            self.stats.accepted += 1
        else:
            record["reject_reason"] = reason
            self._commit(REJECTED, record, row_id, sample_index, reason=reason, **tokens)
            self.stats.rejected[reason] += 1
        self.cost.add(answer.prompt_tokens, answer.completion_tokens)

    def _write_row(self, row_id: str) -> None:
        """Every held sample of a row: the majority of the answers that passed the other filters is kept
        (then checked for duplicates of other inputs), the rest rejected as disagreement; a row whose majority
        is too weak is rejected whole. Each answer record says how much its row agreed."""
        held = self._held.pop(row_id)
        answers = [
            self._assess(job, result, dedupe=False)
            for job, result in held
            if isinstance(result, ChatResponse)
        ]
        candidates = [answer for answer in answers if answer.reason is None]
        keys = [filters.agreement_key(answer.record["output"]) for answer in candidates]
        majority, rate = filters.vote(keys)
        flagged = len(candidates) > 1 and rate <= self.min_agreement
        if len(candidates) > 1:
            self.stats.agreement_inputs += 1
            self.stats.agreement_sum += rate
            self.stats.agreement_flagged += flagged
        for answer, key in zip(candidates, keys, strict=True):
            if flagged:
                answer.reason = filters.LOW_AGREEMENT
            elif key != majority:
                answer.reason = filters.DISAGREEMENT
            else:
                answer.reason, answer.answer_hash = self.quality.deduplicate(
                    answer.record["output"], answer.row
                )
        for answer in answers:
            answer.record["agreement"] = round(rate, 4) if candidates else None
            self._write_answer(answer)
        for job, result in held:
            if isinstance(result, CallFailure):
                self._failure(row_id, job.key[1], result)
        for _ in held:
            self._finished(row_id)

    def flush_held_rows(self) -> None:
        """At the end of a run: rows whose other samples never came (a stop) are written with what came."""
        for row_id in list(self._held):
            self._write_row(row_id)

    def _failure(self, row_id: str, sample_index: int, failure: CallFailure) -> None:
        record = {
            "id": row_id,
            "sample_index": sample_index,
            "error_class": failure.error_class,
            "message": failure.message,
            "status": failure.status,
            "attempts": max(failure.attempts, 1),
            "failed_at": _utc_now(),
        }
        self._commit(FAILED, record, row_id, sample_index)
        self.stats.failed[failure.error_class] += 1

    def _commit(self, kind: str, record: dict, row_id: str, sample_index: int, **entry: object) -> None:
        """Record line, then ledger entry. If the entry cannot be written, no further record may be either:
        only the last record of a shard may lack its entry, or `reconcile` could not restore it."""
        self.shards.write(kind, orjson.dumps(record, option=_DUMP_OPTIONS))
        try:
            self.ledger.add(record_key(row_id, sample_index), kind, **entry)  # type: ignore[arg-type]
        except OSError as exc:
            self.shards.broken = exc
            raise

    def flush_position(self) -> None:
        """Store the resume position (called once at the end of the run)."""
        try:
            self.position.flush()
        except OSError as exc:
            self.shards.broken = exc
            raise
