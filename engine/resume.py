"""The ledger `done.keys`: what a resumed run must not send again, loaded in well under a second per million.

Parsing a million ~1 KB records on every resume would take tens of seconds and gigabytes, so each finished
(id, sample_index) also gets one fixed 32-byte binary entry here, written right after its record in the same
synchronous callback (little-endian):

    u64 key  u64 output hash (0: none)  u32 prompt tokens  u32 completion tokens  u8 code  7 bytes zero

`code` is one ASCII letter: a accepted, f failed, or the reject reason's letter (see CODES). Fixed-size
entries let a resume read the key column with one strided memoryview slice into a set of ints, at C speed
(~0.1 s per million), and make a torn entry obvious (size not a multiple of 32). Code "@" is a watermark
(key: byte offset, prompt tokens: line number): every input row before that offset is finished, so a resumed run
seeks there instead of re-reading the rows before it.

Records are written first, ledger entries second, so after `kill -9` at most the final record of a shard
lacks its entry; `reconcile` adds it from that record. A torn entry is cut off like a torn shard line.
"""

from __future__ import annotations

import hashlib
import os
import struct
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import orjson
from distill.engine import filters
from distill.engine.shards import last_line, write_all

LEDGER_NAME = "done.keys"
ACCEPTED = "a"
FAILED = "f"
CODES = {
    ACCEPTED: "accepted",
    FAILED: "failed",
    "t": filters.TRUNCATED,
    "m": filters.FORMAT,
    "r": filters.REFUSAL,
    "s": filters.TOO_SHORT,
    "e": filters.ECHO,
    "d": filters.DUPLICATE,
}
REASON_CODES = {reason: code for code, reason in CODES.items()}


def record_key(row_id: str, sample_index: int) -> int:
    """The 64-bit key of one (id, sample_index), stable across processes; also the request id's digest."""
    digest = hashlib.blake2b(f"{row_id}#{sample_index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def code_of(kind: str, reject_reason: str | None) -> str:
    if kind == "accepted":
        return ACCEPTED
    if kind == "failed":
        return FAILED
    return REASON_CODES[reject_reason]


ENTRY = struct.Struct("<QQIIB7x")
WATERMARK = ord("@")


class Ledger:
    """Loads the finished keys of earlier runs and appends this run's, one os.write per entry."""

    def __init__(self, run_dir: str | Path) -> None:
        if sys.byteorder != "little":  # the strided memoryview read below assumes it
            raise RuntimeError("the done.keys ledger reader supports little-endian machines only")
        self.path = Path(run_dir) / LEDGER_NAME
        self.done: set[int] = set()
        self.accepted_hashes: set[int] = set()
        self.codes: Counter[str] = Counter()
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.watermark: tuple[int, int] = (0, 1)
        self.torn_bytes = 0
        # After a failed write (a full disk) nothing more is appended: a partial entry stays the last one.
        self.broken: OSError | None = None
        if self.path.exists():
            self.torn_bytes = _repair_partial_entry(self.path)
            self._load(self.path.read_bytes())
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def _load(self, data: bytes) -> None:
        if not data:
            return
        words = memoryview(data).cast("Q")  # 4 words per entry
        halves = memoryview(data).cast("I")  # 8 per entry: tokens are halves 4 and 5
        codes = data[24 :: ENTRY.size]
        self.done = set(words[0::4])
        self.prompt_tokens = sum(halves[4::8])  # watermarks' line numbers are subtracted below
        self.completion_tokens = sum(halves[5::8])
        self.codes = Counter({chr(code): count for code, count in Counter(codes).items()})
        marks = self.codes.pop("@", 0)
        if marks:
            last = codes.rfind(b"@")
            self.watermark = (words[4 * last], halves[8 * last + 4])
            for index in _positions(codes, b"@"):
                self.done.discard(words[4 * index])
                self.prompt_tokens -= halves[8 * index + 4]
        # Only accepted entries carry a hash; every other entry (watermarks too) has 0 there.
        self.accepted_hashes = set(words[1::4])
        self.accepted_hashes.discard(0)

    def _append(self, entry: bytes) -> None:
        if self.broken is not None:
            raise self.broken
        try:
            write_all(self._fd, entry)
        except OSError as exc:
            self.broken = exc
            raise

    def add(
        self, key: int, code: str, output_hash: int | None, prompt_tokens: int, completion_tokens: int
    ) -> None:
        """Append one finished key. Raises DiskFullError (from write_all) when the disk is full."""
        self._append(ENTRY.pack(key, output_hash or 0, prompt_tokens, completion_tokens, ord(code)))
        self.codes[code] += 1
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens

    def mark_watermark(self, offset: int, line: int) -> None:
        """Every row before ``offset`` is finished (or, with (0, 1), forget earlier watermarks)."""
        self._append(ENTRY.pack(offset, 0, line, 0, WATERMARK))
        self.watermark = (offset, line)

    @property
    def finished(self) -> int:
        return sum(self.codes.values())

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _positions(haystack: bytes, needle: bytes):
    at = haystack.find(needle)
    while at != -1:
        yield at
        at = haystack.find(needle, at + 1)


def _repair_partial_entry(path: Path) -> int:
    """Cut an entry torn by a full disk to a whole number of entries; its bytes go to ``<path>.torn``."""
    size = path.stat().st_size
    torn = size % ENTRY.size
    if torn:
        with path.open("r+b") as handle:
            handle.seek(size - torn)
            with open(f"{path}.torn", "ab") as aside:
                aside.write(handle.read())
            handle.truncate(size - torn)
    return torn


def reconcile(ledger: Ledger, shard_paths: Iterable[Path]) -> int:
    """Give the final record of each shard its ledger line if the kill came between the two; count added."""
    added = 0
    for path in shard_paths:
        line = last_line(path)
        if not line:
            continue
        record = orjson.loads(line)
        key = record_key(record["id"], record["sample_index"])
        if key in ledger.done:
            continue
        kind = path.name.split("-", 1)[0]
        out_hash = filters.output_hash(record["output"]) if kind == "accepted" else None
        usage = record.get("usage") or {}
        ledger.add(
            key,
            code_of(kind, record.get("reject_reason")),
            out_hash,
            usage.get("prompt_tokens") or 0,
            usage.get("completion_tokens") or 0,
        )
        ledger.done.add(key)
        if out_hash is not None:
            ledger.accepted_hashes.add(out_hash)
        added += 1
    return added


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
        with path.open("rb") as handle:
            moved += sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
        os.replace(path, target)
    ledger = run_dir / LEDGER_NAME
    if ledger.exists():
        _repair_partial_entry(ledger)
        data = ledger.read_bytes()
        size = ENTRY.size
        # Watermarks go too: the rows of the failures lie behind them.
        kept = b"".join(
            data[at : at + size]
            for at in range(0, len(data), size)
            if data[at + 24] not in (ord(FAILED), WATERMARK)
        )
        temporary = ledger.with_suffix(".tmp")
        temporary.write_bytes(kept)
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, ledger)
    marker.unlink()
    return moved
