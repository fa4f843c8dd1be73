"""Files written whole: a kill while writing leaves the old file (or none), never half of one."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO


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
