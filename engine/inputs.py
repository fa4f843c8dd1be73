"""Input rows from a JSONL file: validated in one fast pass before any request, then streamed lazily.

Decision (documented in docs/engine.md): the whole file is validated before the first request, so a bad
line 900,000 costs nothing instead of hours of paid calls; the pass keeps only 8-byte hashes of ids, so
memory stays flat, and a resumed run skips it when the file is unchanged (size and mtime).

Ids: when the first row has the id field, every row must have a non-empty string or integer id. When it
has none (or `id_field` is null) every id is derived from the input text: the first 16 hex digits of its
SHA-1, stable across runs and machines.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from orjson import JSONDecodeError
from orjson import loads as _loads

from distill.errors import UserError


class InputRow:
    """One input: its id, its text and its 1-based line in the file (a plain slots class: built 1M times)."""

    __slots__ = ("id", "text", "line", "offset")

    def __init__(self, id: str, text: str, line: int, offset: int = 0) -> None:
        self.id = id
        self.text = text
        self.line = line
        # Byte offset of the line's start: a resumed run seeks past rows known to be finished.
        self.offset = offset

    def __repr__(self) -> str:
        return f"InputRow(id={self.id!r}, line={self.line})"


@dataclass(frozen=True, slots=True)
class InputFileInfo:
    """What a validation pass established, and how to tell the file has not changed since."""

    path: str
    size: int
    mtime_ns: int
    rows: int
    derived_ids: bool

    def still_matches(self, path: Path) -> bool:
        stat = path.stat()
        return (
            str(path.resolve()) == self.path
            and stat.st_size == self.size
            and stat.st_mtime_ns == self.mtime_ns
        )


def derive_id(text: str) -> str:
    """A stable id for a row that has none: the input text's SHA-1, shortened to 16 hex digits."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


class _RowReader:
    """Turns one raw line into an InputRow, with errors as ``file:line: field: problem``."""

    def __init__(
        self, path: Path, id_field: str | None, input_field: str, derive_ids: bool | None = None
    ) -> None:
        self.path = path
        self.id_field = id_field
        self.input_field = input_field
        self.derive_ids: bool | None = True if not id_field else derive_ids

    def fail(self, line: int, field: str, problem: str) -> UserError:
        return UserError(f"{self.path}:{line}: {field}: {problem}")

    def read(self, raw: bytes, line: int) -> InputRow | None:
        """The row on this line, None for a blank line. The common case runs without a single branch taken
        into the diagnostics: this is called a million times on a big file, twice (validation, then jobs)."""
        try:
            row = _loads(raw)
        except JSONDecodeError as exc:
            if not raw.strip():
                return None
            raise self.fail(line, "(line)", f"malformed JSON: {exc}") from None
        try:
            text = row[self.input_field]
        except (KeyError, TypeError):
            text = None
        if type(text) is not str or not text or text.isspace():
            self._diagnose_text(row, line)
        if self.derive_ids is False:
            value = row.get(self.id_field)
            if type(value) is str and value and not value.isspace() and "\n" not in value:
                return InputRow(value, text, line)
        return InputRow(self._id_of(row, text, line), text, line)

    def _diagnose_text(self, row: object, line: int) -> None:
        if not isinstance(row, dict):
            raise self.fail(line, "(line)", f"expected a JSON object, got {type(row).__name__}")
        text = row.get(self.input_field)
        if text is None:
            raise self.fail(line, self.input_field, "missing field (set input_field to read another one)")
        if not isinstance(text, str):
            raise self.fail(line, self.input_field, f"must be a string, got {type(text).__name__}")
        raise self.fail(line, self.input_field, "is empty")

    def _id_of(self, row: dict, text: str, line: int) -> str:
        id_field = self.id_field
        has_id = id_field is not None and id_field in row
        if self.derive_ids is None:
            self.derive_ids = not has_id
        if self.derive_ids:
            if has_id:
                raise self.fail(
                    line, id_field, "present here but absent from the first row: give every row an id or none"
                )
            return derive_id(text)
        if not has_id:
            raise self.fail(line, id_field, "missing field (the first row has one, so every row needs one)")
        value = row[id_field]
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise self.fail(line, id_field, f"must be a string or an integer, got {type(value).__name__}")
        value = str(value)
        if not value.strip():
            raise self.fail(line, id_field, "is empty")
        if "\n" in value:
            raise self.fail(line, id_field, "must not contain a newline")
        return value


def _open(path: Path):
    try:
        return path.open("rb", buffering=1 << 20)
    except FileNotFoundError:
        raise UserError(f"{path}: input file not found") from None
    except IsADirectoryError:
        raise UserError(f"{path}: input is a directory, expected a JSONL file") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read input: {exc.strerror}") from None


def iter_inputs(
    path: str | Path,
    id_field: str | None = "id",
    input_field: str = "input",
    *,
    start: tuple[int, int] = (0, 1),
    derive_ids: bool | None = None,
) -> Iterator[InputRow]:
    """Stream the rows of a JSONL file one at a time; blank lines are skipped.

    ``start`` = (byte offset, line number) of a line start to begin at; a run resuming there must pass the
    ``derive_ids`` its validation pass found, since the first row is then not seen.
    """
    path = Path(path)
    reader = _RowReader(path, id_field, input_field, derive_ids)
    offset, line = start
    read = reader.read
    with _open(path) as handle:
        if offset:
            handle.seek(offset)
        for raw in handle:
            row = read(raw, line)
            if row is not None:
                row.offset = offset
                yield row
            offset += len(raw)
            line += 1


class RowLookup:
    """Rows read back by (byte offset, line number), for answers that return out of input order (batch mode).

    Use as a context manager; each lookup is one seek and one line read.
    """

    def __init__(
        self, path: str | Path, id_field: str | None, input_field: str, *, derive_ids: bool | None
    ) -> None:
        self._reader = _RowReader(Path(path), id_field, input_field, derive_ids)
        # Default buffering: a lookup reads one line, not the 1 MiB the streaming reader buffers.
        self._handle = open(path, "rb")

    def row(self, offset: int, line: int) -> InputRow:
        self._handle.seek(offset)
        row = self._reader.read(self._handle.readline(), line)
        if row is None:
            raise UserError(
                f"{self._reader.path}:{line}: (line): the row is gone; the input file was changed"
            )
        row.offset = offset
        return row

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> RowLookup:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def validate_inputs(
    path: str | Path, id_field: str | None = "id", input_field: str = "input"
) -> InputFileInfo:
    """Check every line and that ids are unique, before anything is sent; count the rows."""
    path = Path(path)
    stat_before = _stat(path)
    reader = _RowReader(path, id_field, input_field)
    # Python's str hash is 64-bit and fast; a collision only triggers an exact re-check below.
    seen: set[int] = set()
    rows = 0
    with _open(path) as handle:
        for line, raw in enumerate(handle, start=1):
            row = reader.read(raw, line)
            if row is None:
                continue
            rows += 1
            key = hash(row.id)
            if key in seen:
                first = _first_line_with_id(path, id_field, input_field, row.id, line)
                if first is not None:
                    what = "input text (ids are derived from it)" if reader.derive_ids else "id"
                    raise UserError(
                        f"{path}:{line}: {id_field if not reader.derive_ids else input_field}: "
                        f"duplicate {what} {row.id!r}, first seen on line {first}"
                    )
            seen.add(key)
    if rows == 0:
        raise UserError(f"{path}: input file has no rows (it is empty or only blank lines)")
    return InputFileInfo(
        str(path.resolve()), stat_before.st_size, stat_before.st_mtime_ns, rows, bool(reader.derive_ids)
    )


def _stat(path: Path):
    try:
        return path.stat()
    except FileNotFoundError:
        raise UserError(f"{path}: input file not found") from None


def _first_line_with_id(
    path: Path, id_field: str | None, input_field: str, wanted: str, before: int
) -> int | None:
    for row in iter_inputs(path, id_field, input_field):
        if row.line >= before:
            return None
        if row.id == wanted:
            return row.line
    return None
