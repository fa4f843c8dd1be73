"""The record contract: what one line of a run directory's shards holds, and the one way to read them.

A run directory has three kinds of shard, one JSON object per line: ``accepted-NNNNN.jsonl`` holds
`AcceptedRecord`s, ``rejected-…`` `RejectedRecord`s and ``failed-…`` `FailureRecord`s. `engine.writer`
writes them; export, resume, the trainer's data loader and the review page read them only through
`iter_records` / `RecordReader` / `read_last_record`, which validate every line against these models and name
``file:line: field`` when one does not fit. docs/engine.md's field table is generated from the models
(`field_table`), and a test keeps the two equal.

Unknown fields are ignored on read, so a run directory written by a newer distill stays readable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import ClassVar, Literal

from distill.engine.shards import KINDS, last_line, list_shards
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from distill.config_files import describe_validation_error
from distill.errors import UserError

Kind = Literal["accepted", "rejected", "failed"]


def record_key(row_id: str, sample_index: int) -> int:
    """The 64-bit identity of one (id, sample_index), stable across processes: the ledger's key."""
    digest = hashlib.blake2b(f"{row_id}#{sample_index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


class Usage(BaseModel):
    """Tokens the teacher billed for this answer (from the response's ``usage``; 0 when it sent none)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    prompt_tokens: int = Field(ge=0, description="prompt tokens billed")
    completion_tokens: int = Field(ge=0, description="completion tokens billed")


class _Stored(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    KIND: ClassVar[Kind]

    id: str = Field(description="the input row's id (or the 16-hex-digit SHA-1 of its text when it has none)")
    sample_index: int = Field(
        ge=0, description="which of the row's `samples_per_input` answers this is (0-based)"
    )
    _where: str = PrivateAttr(default="")

    @property
    def kind(self) -> Kind:
        return self.KIND

    @property
    def key(self) -> int:
        return record_key(self.id, self.sample_index)

    @property
    def where(self) -> str:
        """``shard:line`` this record was read from ("" for one built in memory)."""
        return self._where


class AnswerRecord(_Stored):
    """Fields every answer record has, accepted or rejected."""

    instruction: str = Field(description="the student's prompt: `task`, a blank line, then the input")
    thinking: str | None = Field(
        description="the teacher's reasoning (null when the answer could not be parsed)"
    )
    output: str | None = Field(description="the final answer (null when the answer could not be parsed)")
    full_output: str | None = Field(
        description="the training target with reasoning: `【思考】{thinking}\\n\\n【答案】{output}`"
    )
    source_model: str = Field(description="the model the server says answered (else the configured one)")
    generated_at: str = Field(description="when the answer arrived: ISO 8601 UTC, milliseconds")
    temperature: float = Field(description="the sampling temperature sent")
    usage: Usage = Field(description="`{prompt_tokens, completion_tokens}` billed")
    latency_ms: float = Field(ge=0, description="request latency of the successful attempt, in ms")
    finish_reason: str | None = Field(description="the server's `finish_reason` (`stop`, `length`, …)")
    thinking_source: Literal["markers", "field", "none"] | None = Field(
        default=None,
        description="where the thinking came from: `markers` in the answer text, or a reasoning model's "
        "separate `field` (`reasoning_content` / `reasoning`); `none` for a structured answer without thinking",
    )
    agreement: float | None = Field(
        default=None,
        description="with self-consistency on: the share of its input's compared answers that agree with the "
        "majority",
    )


class AcceptedRecord(AnswerRecord):
    """An answer that passed every filter: what export and training use."""

    KIND: ClassVar[Kind] = "accepted"

    thinking: str = Field(description="the teacher's reasoning")
    output: str = Field(description="the final answer")
    full_output: str = Field(
        description="the training target with reasoning: `【思考】{thinking}\\n\\n【答案】{output}`"
    )


class RejectedRecord(AnswerRecord):
    """An answer a filter refused, kept so that nothing paid for is thrown away unseen."""

    KIND: ClassVar[Kind] = "rejected"

    reject_reason: str = Field(description="the filter that refused it (see Parsing and filters)")
    response: str | None = Field(
        default=None, description="the raw answer, only when it had no markers to split it by"
    )


class FailureRecord(_Stored):
    """A request that finally failed after its retries: no answer, no tokens billed."""

    KIND: ClassVar[Kind] = "failed"

    error_class: str = Field(
        description="`timeout`, `rate_limited`, `server_error`, `auth`, … (see the client)"
    )
    message: str = Field(description="what went wrong (never holds the API key)")
    status: int | None = Field(description="the last HTTP status, if there was one")
    attempts: int = Field(ge=1, description="attempts made, the first included")
    failed_at: str = Field(description="when it was given up: ISO 8601 UTC, milliseconds")


Record = AcceptedRecord | RejectedRecord | FailureRecord
MODELS: dict[str, type[_Stored]] = {
    model.KIND: model for model in (AcceptedRecord, RejectedRecord, FailureRecord)
}


def parse_record(kind: str, line: bytes | str, where: str) -> Record:
    """Validate one shard line as a record of ``kind``; a line that does not fit is a UserError naming it."""
    try:
        record = MODELS[kind].model_validate_json(line)
    except ValidationError as exc:
        raise _damaged(exc, where) from None
    record._where = where
    return record  # type: ignore[return-value]


def _damaged(exc: ValidationError, where: str) -> UserError:
    return UserError(
        f"{describe_validation_error(exc, where)}\n{where}: this record is damaged: restore the shard from a "
        "backup, or move it out of the run directory (its records are then generated again by the next "
        "`distill generate`)"
    )


def _kind_of(shard: Path) -> str:
    return shard.name.split("-", 1)[0]


class RecordReader:
    """Every record of a run directory's shards, in shard order; validated line by line.

    A final line without its newline is a record torn by a killed writer (the next `distill generate`
    repairs it and sends its request again): it is skipped and counted in ``torn_lines``.
    """

    def __init__(self, run_dir: str | Path, kinds: Iterable[str] = KINDS) -> None:
        self.run_dir = Path(run_dir)
        self.kinds = tuple(kinds)
        unknown = [kind for kind in self.kinds if kind not in MODELS]
        if unknown:
            raise ValueError(f"unknown record kind {unknown[0]!r}; kinds are {', '.join(KINDS)}")
        self.torn_lines = 0

    def shards(self) -> list[Path]:
        try:
            return [shard for shard in list_shards(self.run_dir) if _kind_of(shard) in self.kinds]
        except FileNotFoundError:
            raise UserError(f"{self.run_dir}: no such run directory") from None

    def __iter__(self) -> Iterator[Record]:
        for shard in self.shards():
            yield from self._read_shard(shard)

    def _read_shard(self, shard: Path) -> Iterator[Record]:
        model = MODELS[_kind_of(shard)]
        name = str(shard)
        with shard.open("rb", buffering=1 << 20) as lines:
            for number, line in enumerate(lines, start=1):
                if not line.endswith(b"\n"):
                    self.torn_lines += 1
                    return
                if line.isspace():
                    continue
                try:
                    record = model.model_validate_json(line)
                except ValidationError as exc:
                    raise _damaged(exc, f"{name}:{number}") from None
                record._where = f"{name}:{number}"
                yield record


def iter_records(run_dir: str | Path, kinds: Iterable[str] = KINDS) -> Iterator[Record]:
    """Every record of ``kinds`` in a run directory, validated (see `RecordReader`)."""
    return iter(RecordReader(run_dir, kinds))


def read_last_record(shard: Path) -> Record | None:
    """The final complete record of a shard, or None for an empty one (resume's reconcile reads only this)."""
    line = last_line(shard)
    if not line:
        return None
    return parse_record(_kind_of(shard), line, f"{shard}:last line")


def field_table() -> str:
    """The Markdown table of every record field, as docs/engine.md shows it (a test keeps them equal)."""
    rows = ["| field | in | type | meaning |", "|---|---|---|---|"]
    kinds: dict[str, list[str]] = {}
    types: dict[str, dict[str, list[str]]] = {}
    meaning: dict[str, str] = {}
    for model in (RejectedRecord, AcceptedRecord, FailureRecord):
        for name, info in model.model_fields.items():
            kinds.setdefault(name, []).append(model.KIND)
            types.setdefault(name, {}).setdefault(_type_name(info.annotation), []).append(model.KIND)
            meaning.setdefault(name, info.description or "")
    for name in kinds:
        if len(types[name]) == 1:
            type_text = next(iter(types[name]))
        else:
            type_text = "; ".join(f"{' and '.join(where)}: {text}" for text, where in types[name].items())
        rows.append(
            f"| `{name}` | {', '.join(sorted(kinds[name], key=KINDS.index))} | {type_text} | {meaning[name]} |"
        )
    return "\n".join(rows)


def _type_name(annotation: object) -> str:
    text = (
        str(annotation)
        if hasattr(annotation, "__args__")
        else getattr(annotation, "__name__", str(annotation))
    )
    text = (
        text.replace("typing.", "").replace("NoneType", "null").replace("None", "null").replace(" | ", " or ")
    )
    if text.startswith("Optional[") and text.endswith("]"):
        text = f"{text[9:-1]} or null"
    if text.startswith("Literal["):
        values, rest = text[8:].split("]", 1)
        text = " or ".join(f"`{value.strip().strip(chr(39))}`" for value in values.split(",")) + rest
    return text
