"""Files and directories written whole (a kill while writing leaves the old one, or none, never half of one),
and small JSONL files read whole with file:line errors."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from distill.errors import UserError

T = TypeVar("T")


@contextmanager
def replacing(path: Path) -> Iterator[BinaryIO]:
    """A binary handle on a temporary file beside ``path``, fsync'd and renamed over ``path`` when the block
    ends without an error (after one, the temporary file is removed and ``path`` is left as it was)."""
    temporary = path.with_name(path.name + ".tmp")
    try:
        with open(temporary, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


@contextmanager
def replacing_directory(path: Path) -> Iterator[Path]:
    """A path beside ``path``, private to this process and empty, for the block to build a directory at; it is
    renamed to ``path`` when the block ends without an error (after one, it is removed)."""
    staging = path.with_name(f"{path.name}.tmp{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)  # what a killed earlier attempt of this process id left
    try:
        yield staging
        os.replace(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_atomically(path: Path, data: bytes | str) -> Path:
    """Replace ``path`` with ``data`` (text as UTF-8), whole or not at all."""
    with replacing(path) as handle:
        handle.write(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Replace ``path`` with one JSON object a line (UTF-8, not ASCII-escaped), whole or not at all."""
    with replacing(path) as handle:
        for row in rows:
            handle.write((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))
    return path


def read_jsonl(path: str | os.PathLike, parse: Callable[[Any], T], what: str) -> list[T]:
    """Every non-blank line of a JSONL file, decoded and passed to ``parse``. A line that is not JSON, or that
    ``parse`` refuses (KeyError, TypeError, ValueError), is a UserError naming the file, the line and ``what``
    the line should have been."""
    items = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                items.append(parse(json.loads(line)))
            except (KeyError, TypeError, ValueError) as exc:
                raise UserError(f"{path}:{number}: not {what}: {exc}") from None
    return items
