"""Append-only JSONL shards that survive `kill -9`: accepted-NNNNN.jsonl, rejected-…, failed-….

Each record is one `os.write` of one whole line on an O_APPEND descriptor, with no user-space buffer, so a
killed process leaves at most a torn final line. `repair_torn_tail` cuts such a line off at start-up and
keeps its bytes in `<shard>.torn`, so nothing is silently lost. After the first failed write (a full disk)
the set refuses every further write: a torn line is then only ever the last one.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

KINDS = ("accepted", "rejected", "failed")
_SHARD_NAME = re.compile(r"^(accepted|rejected|failed)-(\d{5,})\.jsonl$")


class DiskFullError(OSError):
    """A shard or ledger write failed for lack of space (or quota); the run must stop admitting work."""


def shard_path(run_dir: Path, kind: str, index: int) -> Path:
    return run_dir / f"{kind}-{index:05d}.jsonl"


def list_shards(run_dir: str | Path, kind: str | None = None) -> list[Path]:
    """Existing shards, ordered by kind then index."""
    found = []
    for entry in Path(run_dir).iterdir():
        match = _SHARD_NAME.match(entry.name)
        if match and (kind is None or match.group(1) == kind):
            found.append((KINDS.index(match.group(1)), int(match.group(2)), entry))
    return [path for _, _, path in sorted(found)]


def repair_torn_tail(path: Path) -> int:
    """Truncate a final line without its newline, appending its bytes to ``<path>.torn``; bytes moved."""
    with path.open("r+b") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        # Walk back in blocks to the last newline: records are ~1 KB, a torn one rarely spans a block.
        position = size
        block = 64 * 1024
        while position > 0:
            start = max(0, position - block)
            handle.seek(start)
            chunk = handle.read(position - start)
            if position == size and chunk.endswith(b"\n"):
                return 0
            newline = chunk.rfind(b"\n")
            if newline != -1:
                keep = start + newline + 1
                break
            position = start
        else:
            keep = 0
        handle.seek(keep)
        torn = handle.read()
        with open(f"{path}.torn", "ab") as aside:
            aside.write(torn + b"\n")
            aside.flush()
            os.fsync(aside.fileno())
        handle.truncate(keep)
        return len(torn)


def last_line(path: Path) -> bytes | None:
    """The final complete line (without its newline), or None for an empty file."""
    with path.open("rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        block = 64 * 1024
        start = size
        while start > 0:
            start = max(0, start - block)
            handle.seek(start)
            data = handle.read(size - start).rstrip(b"\n")
            newline = data.rfind(b"\n")
            if newline != -1:
                return data[newline + 1 :]
            if start == 0:
                return data or None
        return None


def write_all(fd: int, data: bytes) -> None:
    """One os.write per line; loops only on a short write, and maps a full disk to DiskFullError."""
    try:
        written = os.write(fd, data)
        if written < len(data):  # rare (a signal, a nearly full disk): write the rest
            view = memoryview(data)[written:]
            while view:
                view = view[os.write(fd, view) :]
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise DiskFullError(exc.errno, f"no space left while writing records: {exc.strerror}") from None
        raise


class ShardSet:
    """The three shard streams of one run directory, each rotating at ``max_bytes``."""

    def __init__(self, run_dir: str | Path, max_bytes: int) -> None:
        self.run_dir = Path(run_dir)
        self.max_bytes = max_bytes
        self._fd: dict[str, int] = {}
        self._size: dict[str, int] = {}
        self._index: dict[str, int] = {}
        self.broken: OSError | None = None
        self.torn_bytes = 0
        for kind in KINDS:
            existing = list_shards(self.run_dir, kind)
            for path in existing:
                self.torn_bytes += repair_torn_tail(path)
            self._index[kind] = int(_SHARD_NAME.match(existing[-1].name).group(2)) if existing else 0

    def write(self, kind: str, line: bytes) -> None:
        """Append one newline-terminated record to the kind's current shard."""
        if self.broken is not None:
            raise self.broken
        fd = self._fd.get(kind)
        if fd is None:
            fd = self._open(kind)
        elif self._size[kind] + len(line) > self.max_bytes and self._size[kind] > 0:
            os.close(fd)
            self._index[kind] += 1
            fd = self._open(kind)
        try:
            write_all(fd, line)
        except OSError as exc:
            self.broken = exc
            raise
        self._size[kind] += len(line)

    def _open(self, kind: str) -> int:
        path = shard_path(self.run_dir, kind, self._index[kind])
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._fd[kind] = fd
        self._size[kind] = os.fstat(fd).st_size
        return fd

    def close(self) -> None:
        for fd in self._fd.values():
            os.close(fd)
        self._fd.clear()
