"""An append-only JSONL log whose every acknowledged line survives `kill -9` and power loss.

Each entry is one ``os.write`` of one whole line on an ``O_APPEND`` descriptor followed by ``fsync``, and only
then is the caller told it is saved. A process killed mid-write can leave at most one torn final line, which
was never acknowledged: the writer moves it aside (``<log>.torn``) when it opens the log, and readers skip it.
Entries are never rewritten; the reader folds them in file order, so a later entry wins.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from distill.engine.shards import repair_torn_tail, write_all

from distill.errors import UserError


def read_entries(path: Path, start: int = 0) -> Iterator[tuple[int, dict[str, Any]]]:
    """(offset just past the entry, entry) for every complete line from byte ``start``; a torn tail is skipped."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return
    with handle:
        handle.seek(start)
        offset = start
        for number, line in enumerate(handle, start=1):
            if not line.endswith(b"\n"):
                return  # a torn final line: never acknowledged to anyone
            offset += len(line)
            if not line.strip():
                continue
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                where = f"{path}:{number}" if start == 0 else f"{path} (byte {offset - len(line)})"
                raise UserError(f"{where}: not a valid log entry ({exc}); fix or remove that line") from None
            if not isinstance(entry, dict):
                raise UserError(f"{path}: byte {offset - len(line)}: a log entry must be a JSON object")
            yield offset, entry


class AppendLog:
    """The one writer of a log file: holds an exclusive lock on ``<log>.lock`` while open."""

    def __init__(self, path: Path, *, what: str) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise UserError(
                f"{path}: another process is writing {what} to it right now (is a review page open?)"
            ) from None
        self.torn_bytes = repair_torn_tail(path) if path.exists() else 0
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.size = os.fstat(self._fd).st_size

    def append(self, entry: dict[str, Any]) -> int:
        """Write one entry durably; returns the log size after it (the entry's end offset)."""
        line = orjson.dumps(entry, option=orjson.OPT_APPEND_NEWLINE)
        write_all(self._fd, line)
        os.fsync(self._fd)
        self.size += len(line)
        return self.size

    def append_many(self, entries: list[dict[str, Any]]) -> list[int]:
        """Write entries, one line each, then sync once; returns each entry's end offset."""
        ends = []
        for entry in entries:
            line = orjson.dumps(entry, option=orjson.OPT_APPEND_NEWLINE)
            write_all(self._fd, line)
            self.size += len(line)
            ends.append(self.size)
        os.fsync(self._fd)
        return ends

    def close(self) -> None:
        os.close(self._fd)
        os.close(self._lock_fd)

    def __enter__(self) -> AppendLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
