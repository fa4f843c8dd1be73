"""Jobs → batch input files within the provider's limits, streamed: a million requests never sit in memory.

Each file ``batches/batch-NNNNN.jsonl`` holds one line per request, in OpenAI's batch format
(``custom_id``, ``method``, ``url``, ``body``), where ``custom_id`` is the record's ledger key in hex, and
the body is exactly what the online client would send. Beside it ``batch-NNNNN.index`` maps each custom_id
back to its input row (id, sample index, byte offset and line) and temperature, so an answer can become a record without
keeping the inputs in memory. A file ends before the row that would take it past ``max_requests_per_file``
or ``max_bytes_per_file``; a row's samples always share a file.

Both files are written under a temporary name, forced to disk and renamed, and only then is the file
entered in the journal: a crash while planning leaves nothing half written that the journal names.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
from distill.engine.batch.journal import BatchFile, Journal
from distill.engine.records import record_key
from distill.engine.types import Job

from distill.errors import UserError

INPUT_SUFFIX = ".jsonl"
INDEX_SUFFIX = ".index"
TEMPORARY_SUFFIX = ".tmp"
BATCH_URL = "/v1/chat/completions"

RequestBody = Callable[[Job], dict]


def custom_id_of(row_id: str, sample_index: int) -> str:
    """The batch line's ``custom_id``: the record's 64-bit ledger key as 16 hex digits."""
    return f"{record_key(row_id, sample_index):016x}"


def input_path(journal: Journal, name: str) -> Path:
    return journal.dir / (name + INPUT_SUFFIX)


def index_path(journal: Journal, name: str) -> Path:
    return journal.dir / (name + INDEX_SUFFIX)


class RowTracker:
    """Stands in for the run's resume position in ``make_jobs`` while planning: it starts the walk where the
    plan stopped and remembers where the row being issued starts (the run's watermark is not moved by
    planning: only records move it)."""

    def __init__(self, start: tuple[int, int]) -> None:
        self.start = start
        self.row: tuple[int, int] = start

    def reading(self, offset: int, line: int) -> None:
        pass

    def issue(self, row_id: str, offset: int, line: int, samples: int) -> None:
        self.row = (offset, line)


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """Where a request's answer goes: its input row and sample."""

    row_id: str
    sample_index: int
    offset: int
    line: int
    temperature: float


def read_index(path: Path) -> dict[str, IndexEntry]:
    """custom_id → IndexEntry for one batch file (at most ``max_requests_per_file`` entries)."""
    entries = {}
    with path.open("rb") as handle:
        for raw in handle:
            custom_id, *fields = orjson.loads(raw)
            entries[custom_id] = IndexEntry(*fields)
    return entries


def read_index_keys(path: Path) -> Iterator[int]:
    """The ledger keys of one batch file's requests."""
    with path.open("rb") as handle:
        for raw in handle:
            yield int(orjson.loads(raw)[0], 16)


class _FileWriter:
    """One batch file and its index, under temporary names until `finish`."""

    def __init__(self, journal: Journal, name: str) -> None:
        self.journal = journal
        self.name = name
        self.final = (input_path(journal, name), index_path(journal, name))
        self.temporary = tuple(path.with_name(path.name + TEMPORARY_SUFFIX) for path in self.final)
        self.requests = self.bytes = self.prompt_tokens = self.completion_tokens = 0
        self._input = self.temporary[0].open("wb", buffering=1 << 20)
        self._index = self.temporary[1].open("wb", buffering=1 << 20)

    def add(
        self, lines: list[bytes], index_lines: list[bytes], prompt_tokens: int, completion_tokens: int
    ) -> None:
        self._input.write(b"".join(lines))
        self._index.write(b"".join(index_lines))
        self.requests += len(lines)
        self.bytes += sum(map(len, lines))
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens

    def finish(self, event: dict) -> BatchFile:
        for handle in (self._input, self._index):
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
        for temporary, final in zip(self.temporary, self.final, strict=True):
            os.replace(temporary, final)
        self.journal.append(
            {
                "event": "planned",
                "file": self.name,
                "requests": self.requests,
                "bytes": self.bytes,
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                **event,
            }
        )
        return self.journal.files[self.name]

    def discard(self) -> None:
        for handle in (self._input, self._index):
            handle.close()
        for temporary in self.temporary:
            temporary.unlink(missing_ok=True)


def remove_unfinished(journal: Journal) -> None:
    """Files a crash left half written (never named by the journal, never uploaded)."""
    for path in journal.dir.glob("*" + TEMPORARY_SUFFIX):
        path.unlink()


@dataclass
class _Row:
    position: tuple[int, int]
    lines: list[bytes]
    index_lines: list[bytes]
    prompt_tokens: int = 0
    completion_tokens: int = 0


def plan_requests(
    journal: Journal,
    jobs: Iterable[Job],
    tracker: RowTracker,
    *,
    request_body: RequestBody,
    max_requests: int,
    max_bytes: int,
    input_name: str,
) -> list[BatchFile]:
    """Put ``jobs`` (from ``make_jobs`` with ``tracker`` as its watermark) into batch files; the pass in
    progress is continued, and marked done at the end of the input."""
    plan_pass = journal.current_pass
    assert plan_pass is not None and not plan_pass.done
    remove_unfinished(journal)
    planned: list[BatchFile] = []
    writer: _FileWriter | None = None
    row: _Row | None = None
    dumps = orjson.dumps

    def place(row: _Row) -> None:
        nonlocal writer
        size = sum(map(len, row.lines))
        if len(row.lines) > max_requests or size > max_bytes:
            raise UserError(
                f"{input_name}:{row.position[1]}: input: this row's {len(row.lines)} request(s) take {size:,} "
                f"bytes, more than one batch file may hold (batch.max_requests_per_file {max_requests:,}, "
                f"batch.max_bytes_per_file {max_bytes:,})"
            )
        if writer is not None and (
            writer.requests + len(row.lines) > max_requests or writer.bytes + size > max_bytes
        ):
            planned.append(writer.finish({"pass": plan_pass.number, "end": list(row.position)}))
            writer = None
        if writer is None:
            writer = _FileWriter(journal, journal.next_file_name())
        writer.add(row.lines, row.index_lines, row.prompt_tokens, row.completion_tokens)

    try:
        for job in jobs:
            row_id, sample_index = job.key
            position = tracker.row
            if row is None or row.position != position:
                if row is not None:
                    place(row)
                row = _Row(position, [], [])
            custom_id = custom_id_of(row_id, sample_index)
            body = request_body(job)
            row.lines.append(
                dumps({"custom_id": custom_id, "method": "POST", "url": BATCH_URL, "body": body}) + b"\n"
            )
            index_fields = [custom_id, row_id, sample_index, *position, job.request.temperature]
            row.index_lines.append(dumps(index_fields) + b"\n")
            max_tokens = job.request.max_tokens
            row.prompt_tokens += max(0, job.reserved_tokens - max_tokens)
            row.completion_tokens += max_tokens
        if row is not None:
            place(row)
        if writer is not None:
            planned.append(writer.finish({"pass": plan_pass.number, "end": None}))
            writer = None
    finally:
        if writer is not None:
            writer.discard()
    journal.append({"event": "pass_done", "pass": plan_pass.number})
    return planned


def plan_resend(journal: Journal, parent: BatchFile, unanswered: set[int]) -> BatchFile:
    """A new batch file with the requests of ``parent`` that have no record, copied line for line."""
    remove_unfinished(journal)
    writer = _FileWriter(journal, journal.next_file_name())
    try:
        with (
            input_path(journal, parent.name).open("rb") as lines,
            index_path(journal, parent.name).open("rb") as index,
        ):
            for line, index_line in zip(lines, index, strict=True):
                if int(orjson.loads(index_line)[0], 16) in unanswered:
                    writer.add([line], [index_line], 0, 0)
        share = writer.requests / max(1, parent.requests)
        writer.prompt_tokens = round(parent.prompt_tokens * share)
        writer.completion_tokens = round(parent.completion_tokens * share)
        return writer.finish({"pass": parent.plan_pass, "parent": parent.name, "depth": parent.depth + 1})
    except BaseException:
        writer.discard()
        raise
