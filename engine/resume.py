"""Resuming a run directory: where to start reading the input, and making the ledger agree with the shards.

- `ResumePosition` is the one owner of the resume position: it decides where the input is read from (the
  stored watermark, or the start when it must be discarded), tracks which rows still have samples in
  flight, and stores a new watermark in the ledger every few hundred results and at the end.
- `reconcile` gives the final record of each shard its ledger entry when a kill came between the two writes.
- `check_shards` compares the ledger with what the shards hold (a deleted or truncated shard) and rebuilds
  the ledger from the shards when they disagree, so what went missing is generated again.
- `move_failures_aside` is `--retry-failed`.
"""

from __future__ import annotations

import os
import zlib
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from distill.engine import filters
from distill.engine.ledger import (
    ENTRY,
    LEDGER_NAME,
    RECORD_KINDS,
    Ledger,
    entry_is_failure_or_watermark,
    rewrite_ledger,
    row_hash,
)
from distill.engine.records import (
    AcceptedRecord,
    Record,
    RecordReader,
    RejectedRecord,
    read_last_record,
    record_key,
)
from distill.engine.shards import list_shards

WATERMARK_EVERY = 512  # results between watermark entries: cheap, and a resume rescans at most this many


class ResumePosition:
    """Where the input is read from, and how far every row is finished.

    The watermark is the (byte offset, line) of the first row that may still have work: every row before it
    is finished, so a resumed run seeks there instead of re-reading and re-hashing a million finished rows.
    """

    def __init__(self, ledger: Ledger, *, discard: bool = False) -> None:
        self._ledger = ledger
        if discard and ledger.watermark != (0, 1):
            # Rows behind the old watermark may have new work now (more samples, retried or lost records).
            ledger.mark_watermark(0, 1)
        self.start: tuple[int, int] = (0, 1) if discard else ledger.watermark
        self._stored = self.start
        self._pending: dict[str, list[int]] = {}  # row id -> [offset, line, samples outstanding]
        self._order: deque[str] = deque()
        self._read_to = self.start
        self._since_flush = 0

    def reading(self, offset: int, line: int) -> None:
        """The producer is at this row: every row before it has been issued (or needed nothing)."""
        self._read_to = (offset, line)

    def issue(self, row_id: str, offset: int, line: int, samples: int) -> None:
        self._pending[row_id] = [offset, line, samples]
        self._order.append(row_id)

    def outstanding(self, row_id: str) -> int:
        """Samples of this row issued and not yet finished (0 for a row not issued)."""
        entry = self._pending.get(row_id)
        return entry[2] if entry is not None else 0

    def finished(self, row_id: str) -> None:
        """One result of this row is on disk; every WATERMARK_EVERY results the position is stored."""
        entry = self._pending.get(row_id)
        if entry is not None:
            entry[2] -= 1
            if entry[2] <= 0:
                del self._pending[row_id]
        self._since_flush += 1
        if self._since_flush >= WATERMARK_EVERY:
            self.flush()

    def position(self) -> tuple[int, int]:
        """(offset, line) of the first row that may still have work; every row before it is finished."""
        order, pending = self._order, self._pending
        while order and order[0] not in pending:
            order.popleft()
        if order:
            offset, line, _ = pending[order[0]]
            return offset, line
        return self._read_to

    def flush(self) -> None:
        """Store the position in the ledger if it moved (raises the ledger's OSError on a failed write)."""
        self._since_flush = 0
        position = self.position()
        if position != self._stored:
            self._ledger.mark_watermark(*position)
            self._stored = position


def ledger_entry_of(record: Record) -> dict:
    """The `Ledger.add` arguments that describe one stored record."""
    if isinstance(record, AcceptedRecord):
        extra = {"answer_hash": filters.output_hash(record.output), "row": row_hash(record.id)}
    elif isinstance(record, RejectedRecord):
        extra = {"reason": record.reject_reason}
    else:
        extra = {}
    usage = getattr(record, "usage", None)
    if usage is not None:
        extra |= {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens}
    return extra


def reconcile(ledger: Ledger, shard_paths: Iterable[Path]) -> int:
    """Give the final record of each shard its ledger entry if the kill came between the two; count added."""
    added = 0
    for path in shard_paths:
        record = read_last_record(path)
        if record is None or record.key in ledger.done:
            continue
        _add(ledger, record)
        added += 1
    return added


def _add(ledger: Ledger, record: Record) -> None:
    entry = ledger_entry_of(record)
    ledger.add(record.key, record.kind, **entry)
    ledger.done.add(record.key)
    if "answer_hash" in entry:
        ledger.accepted_answers[entry["answer_hash"]] = entry["row"]


@dataclass
class ShardCheck:
    """What `check_shards` found: records without a ledger entry, and entries whose record is gone."""

    records_without_entry: int = 0
    entries_without_record: int = 0
    rebuilt: bool = False

    def describe(self) -> str:
        return (
            f"the ledger did not match the shards: {self.entries_without_record} finished record(s) are missing "
            f"from the shards (deleted or truncated?) and will be generated again; "
            f"{self.records_without_entry} record(s) had no ledger entry and were added"
        )


def count_lines(path: Path) -> int:
    """Newlines in the file's first st_size bytes (a shard only grows; a device reads as empty)."""
    left = path.stat().st_size
    lines = 0
    with path.open("rb") as handle:
        while left > 0:
            chunk = handle.read(min(left, 1 << 20))
            if not chunk:
                break
            lines += chunk.count(b"\n")
            left -= len(chunk)
    return lines


def check_shards(run_dir: Path, ledger: Ledger) -> tuple[Ledger, ShardCheck]:
    """Compare the ledger's record counts with the shards' line counts; rebuild the ledger if they differ.

    Counting lines reads the shards once at C speed (no JSON parsing); only a mismatch pays for the full
    rebuild, which reads every record. Returns the ledger to use (a new one after a rebuild).
    """
    lines: Counter[str] = Counter()
    for shard in list_shards(run_dir):
        lines[shard.name.split("-", 1)[0]] += count_lines(shard)
    if all(lines[kind] == ledger.count(kind) for kind in RECORD_KINDS):
        return ledger, ShardCheck()
    return rebuild_ledger(run_dir, ledger)


def rebuild_ledger(run_dir: Path, ledger: Ledger) -> tuple[Ledger, ShardCheck]:
    """The shards are the truth: a new ledger with one entry per record line, and the tokens of entries
    whose record is gone kept as spent (the budget still counts them). The watermark starts over."""
    check = ShardCheck(rebuilt=True)
    old_done = set(ledger.done)
    path = ledger.path
    ledger.close()
    old_entries = path.read_bytes() if path.exists() else b""
    temporary = path.with_name(path.name + ".rebuild")
    temporary.unlink(missing_ok=True)
    fresh = Ledger(run_dir, file_name=temporary.name)
    in_shards: set[int] = set()
    for record in RecordReader(run_dir):
        _add(fresh, record)
        in_shards.add(record.key)
        if record.key not in old_done:
            check.records_without_entry += 1
    lost_prompt = lost_completion = 0
    for at in range(0, len(old_entries) - ENTRY.size + 1, ENTRY.size):
        key, _, prompt, completion, kind, _, _ = ENTRY.unpack_from(old_entries, at)
        if kind in (ord("@"), ord("L")):
            lost_prompt += prompt if kind == ord("L") else 0
            lost_completion += completion if kind == ord("L") else 0
        elif key not in in_shards:
            check.entries_without_record += 1
            lost_prompt += prompt
            lost_completion += completion
    fresh.add_lost_tokens(lost_prompt, lost_completion)
    fresh.close()
    with open(temporary, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    return Ledger(run_dir), check


RETRY_MARKER = "retry-failed.pending"
RETRIED_DIR = "failed-retried"


def retry_failed_pending(run_dir: Path) -> bool:
    """True when an earlier --retry-failed was killed half-way: the next start must finish it."""
    return (run_dir / RETRY_MARKER).exists()


def move_failures_aside(run_dir: Path) -> int:
    """--retry-failed: failure records leave the shards and their keys leave the ledger, so they are sent again.

    Idempotent and restartable: a marker file is written first and removed last, and every start that finds
    it redoes both steps, so a kill in between never leaves a key with no record and no retry, or two.
    """
    marker = run_dir / RETRY_MARKER
    marker.touch()
    aside = run_dir / RETRIED_DIR
    moved = 0
    for path in sorted(run_dir.glob("failed-*.jsonl")) + sorted(run_dir.glob("failed-*.jsonl.torn")):
        aside.mkdir(exist_ok=True)
        target = aside / path.name
        serial = 1
        while target.exists():
            target = aside / f"{path.name}.{serial}"
            serial += 1
        moved += count_lines(path)
        os.replace(path, target)
    ledger = run_dir / LEDGER_NAME
    if ledger.exists():
        # Watermarks go too: the rows of the failures lie behind them.
        rewrite_ledger(ledger, lambda entry: not entry_is_failure_or_watermark(entry))
    marker.unlink()
    return moved


@dataclass
class InputDrift:
    """How the input differs from what the run's records were made from (found when the input changed)."""

    edited: list[tuple[int, str, int]]  # (line, row id, records made from its old text)
    orphaned: int  # records whose (row, sample) is no longer in the input

    def refusal(self, path: Path, input_field: str) -> str:
        line, row_id, count = self.edited[0]
        more = f" ({len(self.edited)} rows in all)" if len(self.edited) > 1 else ""
        return (
            f"{path}:{line}: {input_field}: row {row_id!r} changed since its record(s) were generated "
            f"({count} record(s) hold the old text){more}: restore the row, give the changed row a new id, or use "
            "a new output directory; --force keeps the old records as they are"
        )


def scan_input_drift(
    run_dir: Path, ledger: Ledger, rows: Iterable[tuple[str, str, int]], samples: int
) -> InputDrift:
    """Compare ``rows`` ((id, instruction, line) of the current input) with the records on disk.

    Reads every answer record once (only when the input file or the settings changed since the last start).
    """
    stored: dict[int, tuple[int, int]] = {}  # key -> (instruction hash, record count)
    for record in RecordReader(run_dir, kinds=("accepted", "rejected")):
        digest = zlib.crc32(record.instruction.encode())
        previous = stored.get(record.key)
        stored[record.key] = (digest, previous[1] + 1 if previous else 1)
    edited: list[tuple[int, str, int]] = []
    in_input = 0
    done = ledger.done
    for row_id, instruction, line in rows:
        digest = None
        changed = 0
        for sample in range(samples):
            key = record_key(row_id, sample)
            if key not in done:
                continue
            in_input += 1
            entry = stored.get(key)
            if entry is not None:
                digest = digest if digest is not None else zlib.crc32(instruction.encode())
                changed += entry[1] if entry[0] != digest else 0
        if changed:
            edited.append((line, row_id, changed))
    return InputDrift(edited, max(0, ledger.finished - in_input))
