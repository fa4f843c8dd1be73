"""Training examples from what `distill generate` / `distill export` wrote, validated line by line.

Accepted inputs: an engine run directory (its ``accepted-*.jsonl`` shards), a file of engine records, an
alpaca export (instruction, input, output) or a sharegpt export (conversations: human, gpt). Every problem
is reported as ``file:line: field: message`` before any model is loaded.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from distill.engine.parsing import FULL_THINKING, format_full_output
from distill.engine.records import RecordReader

from distill.errors import UserError

THINKING_MARKER = FULL_THINKING
_MAX_REPORTED = 5


@dataclass(frozen=True, slots=True)
class Example:
    id: str
    instruction: str  # the user turn, exactly as the student will see it
    target: str | None  # the assistant answer to learn; None in an eval file without answers
    where: str  # file:line, for error messages


@dataclass(slots=True)
class LoadedData:
    examples: list[Example]
    files: list[str]
    kinds: list[str]  # per file: records | alpaca | sharegpt
    torn_lines: int = 0  # a final shard line without its newline: a run still being written


def content_id(instruction: str) -> str:
    """The id of a row that carries none: the hash of its normalised instruction."""
    return "sha:" + hashlib.sha256(normalise(instruction).encode("utf-8")).hexdigest()[:16]


def normalise(text: str) -> str:
    return " ".join(text.split())


def _files_of(spec: str, role: str) -> list[Path]:
    path = Path(spec).expanduser()
    if not path.is_file():
        raise UserError(f"{path}: {role}: no such file or directory")
    return [path]


def _read_run_dir(path: Path, fmt: str, role: str, data: LoadedData) -> None:
    """An engine run directory: its accepted records, through the engine's own validated reader."""
    reader = RecordReader(path, kinds=("accepted",))
    shards = reader.shards()
    if not shards:
        raise UserError(
            f"{path}: {role}: no accepted-*.jsonl shards in this directory "
            "(give an engine run directory, a records JSONL or an alpaca/sharegpt export)"
        )
    for record in reader:
        target = record.output if fmt == "answer" else record.full_output
        data.examples.append(
            Example(record.id, record.instruction, target if target.strip() else None, record.where)
        )
    data.torn_lines += reader.torn_lines
    data.files += [str(shard) for shard in shards]
    data.kinds += ["records"] * len(shards)


def _lines(path: Path) -> Iterator[tuple[int, bytes, bool]]:
    """(line number, bytes, has_newline) for every non-blank line."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror}") from None
    lines = data.split(b"\n")
    for number, line in enumerate(lines, start=1):
        if line.strip():
            yield number, line, number < len(lines)


def _kind(row: dict[str, Any]) -> str:
    if "conversations" in row:
        return "sharegpt"
    if "full_output" in row or "thinking" in row or ("sample_index" in row and "input" not in row):
        return "records"
    if "instruction" in row and "input" in row:
        return "alpaca"
    if "instruction" in row:
        return "records"
    return "unknown"


def _text(row: dict[str, Any], field: str, where: str, *, required: bool = True) -> str | None:
    value = row.get(field)
    if value is None:
        if required:
            raise UserError(f"{where}: {field}: missing field")
        return None
    if not isinstance(value, str):
        raise UserError(f"{where}: {field}: must be a string, got {type(value).__name__}")
    if required and not value.strip():
        raise UserError(f"{where}: {field}: empty")
    return value


def _record_target(row: dict[str, Any], fmt: str, where: str, need_target: bool) -> str | None:
    if fmt == "answer":
        return _text(row, "output", where, required=need_target)
    if "full_output" in row or need_target and "thinking" not in row:
        return _text(row, "full_output", where, required=need_target)
    # Older records without full_output: rebuild it exactly as the engine does.
    thinking, output = _text(row, "thinking", where), _text(row, "output", where)
    return format_full_output(thinking, output)


def _sharegpt(row: dict[str, Any], where: str, need_target: bool) -> tuple[str, str | None]:
    turns = row["conversations"]
    if not isinstance(turns, list) or not turns:
        raise UserError(f"{where}: conversations: must be a non-empty list of {{from, value}} turns")
    for index, turn in enumerate(turns):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str) or "from" not in turn:
            raise UserError(f"{where}: conversations.{index}: each turn needs a `from` and a string `value`")
    roles = [turn["from"] for turn in turns]
    if roles[0] != "human" or roles[1:] not in ([], ["gpt"]) or (need_target and roles != ["human", "gpt"]):
        raise UserError(f"{where}: conversations: expected one human turn then one gpt turn, got {roles}")
    if not turns[0]["value"].strip():
        raise UserError(f"{where}: conversations.0.value: empty")
    target = turns[1]["value"] if len(turns) > 1 else None
    if need_target and not target.strip():
        raise UserError(f"{where}: conversations.1.value: empty")
    return turns[0]["value"], target


def _example(row: dict[str, Any], kind: str, fmt: str, where: str, need_target: bool) -> Example:
    if kind == "sharegpt":
        instruction, target = _sharegpt(row, where, need_target)
    elif kind == "alpaca":
        instruction = _text(row, "instruction", where)
        extra = _text(row, "input", where, required=False)
        # LLaMA-Factory's alpaca rendering: the input follows the instruction on its own line.
        instruction = f"{instruction}\n{extra}" if extra and extra.strip() else instruction
        target = _text(row, "output", where, required=need_target)
    else:
        instruction = _text(row, "instruction", where)
        target = _record_target(row, fmt, where, need_target)
    raw_id = row.get("id")
    if raw_id is None:
        if kind == "records":
            raise UserError(f"{where}: id: missing field")
        example_id = content_id(instruction)
    elif isinstance(raw_id, (str, int)) and not isinstance(raw_id, bool) and str(raw_id).strip():
        example_id = str(raw_id)
    else:
        raise UserError(f"{where}: id: must be a non-empty string or integer, got {raw_id!r}")
    return Example(example_id, instruction, target if target and target.strip() else None, where)


def _read_file(path: Path, fmt: str, need_target: bool, data: LoadedData) -> None:
    kind = None
    problems: list[str] = []
    for number, line, has_newline in _lines(path):
        where = f"{path}:{number}"
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            if not has_newline and path.name.startswith("accepted-"):
                data.torn_lines += 1  # the engine repairs this line on its next resume
                continue
            problems.append(f"{where}: not valid JSON ({exc})")
            if len(problems) >= _MAX_REPORTED:
                break
            continue
        if not isinstance(row, dict):
            problems.append(f"{where}: each line must be a JSON object, got {type(row).__name__}")
            continue
        row_kind = _kind(row)
        if row_kind == "unknown":
            problems.append(
                f"{where}: instruction: missing field (expected an engine record, an alpaca row "
                "with instruction/input/output or a sharegpt row with conversations)"
            )
            continue
        kind = kind or row_kind
        try:
            data.examples.append(_example(row, kind, fmt, where, need_target))
        except UserError as exc:
            problems.append(str(exc))
        if len(problems) >= _MAX_REPORTED:
            break
    if problems:
        raise UserError("\n".join(problems))
    data.files.append(str(path))
    data.kinds.append(kind or "empty")


def load_examples(
    specs: Iterable[str], fmt: str, *, role: str = "data", need_target: bool = True
) -> LoadedData:
    """Read every file named (or found in a run directory); fail on the first bad lines, naming them."""
    data = LoadedData(examples=[], files=[], kinds=[])
    specs = list(specs)
    for spec in specs:
        if Path(spec).expanduser().is_dir():
            _read_run_dir(Path(spec).expanduser(), fmt, role, data)
            continue
        for path in _files_of(spec, role):
            _read_file(path, fmt, need_target, data)
    if not data.examples:
        raise UserError(f"{', '.join(specs)}: {role}: no examples found (the files are empty)")
    if need_target:
        _check_format(data, fmt, role)
    return data


def _check_format(data: LoadedData, fmt: str, role: str) -> None:
    """An export already chose its target; catch a `format` that contradicts what the files contain."""
    exported = [
        ex for ex, kind in zip(data.examples, _kinds_per_example(data), strict=True) if kind != "records"
    ]
    if not exported:
        return
    with_thinking = sum(ex.target.startswith(THINKING_MARKER) for ex in exported)
    if fmt == "thinking" and with_thinking == 0:
        raise UserError(
            f"{exported[0].where}: {role}: format is 'thinking' but no target starts with "
            f"{THINKING_MARKER} (export with --with-thinking, or train with --format answer)"
        )
    if fmt == "answer" and with_thinking == len(exported):
        raise UserError(
            f"{exported[0].where}: {role}: format is 'answer' but every target starts with "
            f"{THINKING_MARKER} (train with --format thinking)"
        )


def _kinds_per_example(data: LoadedData) -> list[str]:
    by_file = dict(zip(data.files, data.kinds, strict=True))
    return [by_file[ex.where.rsplit(":", 1)[0]] for ex in data.examples]


def split_validation(
    examples: list[Example], val_size: float, seed: int
) -> tuple[list[Example], list[Example]]:
    """Hold out ``val_size`` of the ids (all samples of an id stay on one side), seeded."""
    if val_size <= 0:
        return examples, []
    ids = sorted({ex.id for ex in examples})
    random.Random(seed).shuffle(ids)
    count = round(len(ids) * val_size)
    if count == 0 or count >= len(ids):
        return examples, []  # too few ids to hold any out without starving training
    held = set(ids[:count])
    return [ex for ex in examples if ex.id not in held], [ex for ex in examples if ex.id in held]


def check_no_overlap(train: list[Example], evaluation: list[Example]) -> None:
    """Refuse an eval set that shares an id, or an identical instruction, with the training data."""
    train_ids = {ex.id: ex for ex in train}
    train_texts = {normalise(ex.instruction): ex for ex in train}
    overlap = [(ex, train_ids[ex.id]) for ex in evaluation if ex.id in train_ids]
    overlap += [
        (ex, train_texts[normalise(ex.instruction)])
        for ex in evaluation
        if ex.id not in train_ids and normalise(ex.instruction) in train_texts
    ]
    if overlap:
        ex, seen = overlap[0]
        raise UserError(
            f"{ex.where}: id: eval example {ex.id!r} overlaps the training data ({seen.where}); "
            f"{len(overlap)} eval example(s) overlap in all — an eval set must be independent"
        )


def fingerprint(examples: list[Example], fmt: str) -> str:
    """Order-independent hash of what is trained on: ids, prompts, targets and the format."""
    rows = sorted(orjson.dumps([ex.id, ex.instruction, ex.target]) for ex in examples)
    digest = hashlib.sha256(fmt.encode())
    for row in rows:
        digest.update(row)
    return digest.hexdigest()[:16]


def ids_sha(ids: Iterable[str]) -> str:
    digest = hashlib.sha256()
    for item in sorted(set(ids)):
        digest.update(item.encode("utf-8") + b"\n")
    return digest.hexdigest()[:16]
