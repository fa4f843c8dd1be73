"""The ledger `done.keys`: what a resumed run must not send again, loaded in well under a second per million.

Parsing a million ~1 KB records on every resume would take tens of seconds and gigabytes, so each finished
(id, sample_index) also gets one fixed 32-byte binary entry here, written right after its record in the same
synchronous callback (little-endian):

    u64 key  u64 answer hash  u32 prompt tokens  u32 completion tokens  u8 kind  u8 0  u16 reason  u32 row

- ``kind`` is one ASCII letter from a fixed set: ``A`` accepted, ``R`` rejected, ``F`` failed, ``@`` a
  resume watermark (key: input byte offset, prompt tokens: line number), ``L`` tokens of records that were
  lost from the shards (spent money the budget must still count; key 0).
- ``reason`` (rejected only) is a 16-bit hash of the reject reason's *name*, so adding a filter never
  changes the format: names are looked up from the reasons the caller knows, and an unknown code is shown
  as such rather than breaking the file.
- ``answer hash`` and ``row`` (accepted only): the normalised answer's 64-bit hash and a 32-bit hash of
  the row id, so dedupe across resumes can tell "the same answer for another input" from "another sample
  of the same input".

Ledgers written by earlier versions used one lower-case letter per reason (``a``, ``f``, ``t``, ``m``, ``r``,
``s``, ``e``, ``d``) and no row hash; they are read as they are, and new entries are appended in the format
above, so an old run directory resumes without a conversion step.

Every value a server sends is clamped into its field before packing (tokens to 0 … 2³²-1): nothing a
teacher answers can make an entry unpackable, or the file unreadable.
"""

from __future__ import annotations

import functools
import hashlib
import os
import struct
import sys
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

from distill.engine.shards import write_all

from distill.errors import UserError
from distill.files import write_atomically

LEDGER_NAME = "done.keys"
ENTRY = struct.Struct("<QQIIBxHI")
ACCEPTED, REJECTED, FAILED = "accepted", "rejected", "failed"
RECORD_KINDS = (ACCEPTED, REJECTED, FAILED)
_KIND_BYTES = {ACCEPTED: ord("A"), REJECTED: ord("R"), FAILED: ord("F")}
_BYTE_KINDS = {byte: kind for kind, byte in _KIND_BYTES.items()}
WATERMARK = ord("@")
LOST = ord("L")
_U32 = 0xFFFFFFFF

# The format of earlier versions: one letter per outcome. Frozen here as text, never derived from the filters.
_LEGACY = {
    ord("a"): (ACCEPTED, None),
    ord("f"): (FAILED, None),
    ord("t"): (REJECTED, "truncated"),
    ord("m"): (REJECTED, "format"),
    ord("r"): (REJECTED, "refusal"),
    ord("s"): (REJECTED, "too_short"),
    ord("e"): (REJECTED, "similar_to_instruction"),
    ord("d"): (REJECTED, "duplicate"),
}


@functools.cache
def reason_code(name: str) -> int:
    """The 16-bit code of a reject reason's name (never 0): stable, and needs no table in the file."""
    code = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=2).digest(), "little")
    return code or 1


def row_hash(row_id: str) -> int:
    """A 32-bit hash of a row id (never 0: 0 means "row unknown", as in old ledgers)."""
    return zlib.crc32(row_id.encode()) or 1


def clamp_u32(value: object) -> int:
    """A token count as the ledger can hold it: an int in 0 … 2³²-1, whatever a server sent."""
    if type(value) is int and 0 <= value <= _U32:  # the usual case, on the hot path
        return value
    try:
        number = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        return 0
    return min(max(number, 0), _U32)


class Ledger:
    """Loads the finished keys of earlier runs and appends this run's, one os.write per entry."""

    def __init__(self, run_dir: str | Path, *, file_name: str = LEDGER_NAME, writable: bool = True) -> None:
        if sys.byteorder != "little":  # the strided memoryview read below assumes it
            raise RuntimeError("the done.keys ledger reader supports little-endian machines only")
        self.path = Path(run_dir) / file_name
        self.done: set[int] = set()
        # answer hash -> row hash of the accepted answer (row 0: unknown, an entry of an old ledger)
        self.accepted_answers: dict[int, int] = {}
        # (kind, reason code) -> entries; reason code 0 for accepted and failed
        self.counts: Counter[tuple[str, int]] = Counter()
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.watermark: tuple[int, int] = (0, 1)
        self.torn_bytes = 0
        # After a failed write (a full disk) nothing more is appended: a partial entry stays the last one.
        self.broken: OSError | None = None
        self._fd = -1
        if not writable:
            if self.path.exists():
                data = self.path.read_bytes()
                self._load(data[: len(data) - len(data) % ENTRY.size])
            return
        if self.path.exists():
            self.torn_bytes = repair_partial_entry(self.path)
            self._load(self.path.read_bytes())
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    @classmethod
    def read_only(cls, run_dir: str | Path) -> Ledger:
        """The ledger as it is on disk, without repairing or creating anything (a torn entry is ignored)."""
        return cls(run_dir, writable=False)

    def _load(self, data: bytes) -> None:
        if not data:
            return
        words = memoryview(data).cast("Q")  # 4 words per entry
        halves = memoryview(data).cast("I")  # 8 per entry: tokens are halves 4 and 5, kind+reason half 6
        kinds = data[24 :: ENTRY.size]
        tags = Counter(halves[6::8])
        counts: Counter[tuple[str, int]] = Counter()
        others = 0
        for tag, count in tags.items():
            kind_byte, pad, reason = tag & 0xFF, (tag >> 8) & 0xFF, tag >> 16
            if pad == 0 and kind_byte in _BYTE_KINDS and (reason == 0) == (kind_byte != ord("R")):
                counts[(_BYTE_KINDS[kind_byte], reason)] += count
            elif pad == 0 and reason == 0 and kind_byte in _LEGACY:
                kind, name = _LEGACY[kind_byte]
                counts[(kind, reason_code(name) if name else 0)] += count
            elif tag in (WATERMARK, LOST):
                others += count
            else:
                at = halves[6::8].tolist().index(tag)
                raise UserError(
                    f"{self.path}: entry {at + 1} (byte {at * ENTRY.size}) is not a ledger entry, so the file is "
                    f"damaged: move it aside (mv {self.path} {self.path}.bad) and rerun; distill then rebuilds it "
                    "from the shards"
                )
        self.counts = counts
        self.done = set(words[0::4])
        self.prompt_tokens = sum(halves[4::8])
        self.completion_tokens = sum(halves[5::8])
        if others:
            last = kinds.rfind(b"@")
            if last != -1:
                self.watermark = (words[4 * last], halves[8 * last + 4])
            for marker in (b"@", b"L"):
                for index in _positions(kinds, marker):
                    self.done.discard(words[4 * index])
                    if marker == b"@":  # a watermark's "prompt tokens" is a line number
                        self.prompt_tokens -= halves[8 * index + 4]
        # Only accepted entries carry an answer hash; every other entry has 0 there.
        self.accepted_answers = dict(zip(words[1::4], halves[7::8], strict=True))
        self.accepted_answers.pop(0, None)

    def _append(self, entry: bytes) -> None:
        if self.broken is not None:
            raise self.broken
        try:
            write_all(self._fd, entry)
        except OSError as exc:
            self.broken = exc
            raise

    def add(
        self,
        key: int,
        kind: str,
        *,
        reason: str | None = None,
        answer_hash: int = 0,
        row: int = 0,
        prompt_tokens: object = 0,
        completion_tokens: object = 0,
    ) -> None:
        """Append one finished key. Raises DiskFullError (from write_all) when the disk is full."""
        code = reason_code(reason) if reason else 0
        prompt, completion = clamp_u32(prompt_tokens), clamp_u32(completion_tokens)
        self._append(ENTRY.pack(key, answer_hash, prompt, completion, _KIND_BYTES[kind], code, row))
        self.counts[(kind, code)] += 1
        self.prompt_tokens += prompt
        self.completion_tokens += completion

    def add_lost_tokens(self, prompt_tokens: int, completion_tokens: int) -> None:
        """Keep the tokens of records that vanished from the shards: their money was spent all the same."""
        while prompt_tokens > 0 or completion_tokens > 0:
            prompt, completion = min(prompt_tokens, _U32), min(completion_tokens, _U32)
            self._append(ENTRY.pack(0, 0, prompt, completion, LOST, 0, 0))
            self.prompt_tokens += prompt
            self.completion_tokens += completion
            prompt_tokens -= prompt
            completion_tokens -= completion

    def mark_watermark(self, offset: int, line: int) -> None:
        """Every row before ``offset`` is finished (or, with (0, 1), forget earlier watermarks)."""
        self._append(ENTRY.pack(offset, 0, clamp_u32(line), 0, WATERMARK, 0, 0))
        self.watermark = (offset, line)

    @property
    def finished(self) -> int:
        return sum(self.counts.values())

    @property
    def answers(self) -> int:
        """Entries of answers (accepted or rejected): what completion tokens were billed for."""
        return self.count(ACCEPTED) + self.count(REJECTED)

    def count(self, kind: str) -> int:
        return sum(count for (entry_kind, _), count in self.counts.items() if entry_kind == kind)

    def rejected_by_reason(self, known: Iterable[str]) -> dict[str, int]:
        """Rejections per reason name; a code no known reason has is shown as ``unknown (0x…)``."""
        names = {reason_code(name): name for name in known}
        result = dict.fromkeys(known, 0)
        for (kind, code), count in self.counts.items():
            if kind == REJECTED:
                name = names.get(code, f"unknown (0x{code:04x})")
                result[name] = result.get(name, 0) + count
        return result

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _positions(haystack: bytes, needle: bytes):
    at = haystack.find(needle)
    while at != -1:
        yield at
        at = haystack.find(needle, at + 1)


def repair_partial_entry(path: Path) -> int:
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


def rewrite_ledger(path: Path, keep: Callable[[bytes], bool]) -> None:
    """Atomically replace the ledger with the entries ``keep(entry)`` accepts (fsync'ed before the rename)."""
    repair_partial_entry(path)
    data = path.read_bytes()
    size = ENTRY.size
    kept = b"".join(data[at : at + size] for at in range(0, len(data), size) if keep(data[at : at + size]))
    write_atomically(path, kept)


def entry_is_failure_or_watermark(entry: bytes) -> bool:
    return entry[24] in (_KIND_BYTES[FAILED], ord("f"), WATERMARK)
