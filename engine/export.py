"""`distill export`: accepted records → training files LLaMA-Factory and `datasets` read directly.

Formats (one JSON object per line):
- alpaca:   {"instruction", "input": "", "output", "id", "sample_index"}
- sharegpt: {"conversations": [{"from": "human", "value"}, {"from": "gpt", "value"}], "id", "sample_index"}

Answer-only (default) trains on `output`; `--with-thinking` trains on `full_output` (【思考】…\\n\\n【答案】…)
so the student learns to reason before answering. `dataset_info.json` describes the files in LLaMA-Factory's
format; an existing one in the output directory is kept and extended. Shards are streamed: memory stays
flat however big the run.
"""

from __future__ import annotations

import contextlib
import re
import sys
from pathlib import Path
from typing import Any, Protocol

import orjson
from distill.engine.records import RecordReader
from distill.engine.rundir import SUMMARY_NAME, is_being_written, refuse_unsafe_location

from distill.errors import UserError
from distill.files import replacing, write_atomically

FORMATS = ("alpaca", "sharegpt")


class RecordSelection(Protocol):
    """What an export keeps of the accepted records (`distill review`'s decisions, for one): each record as
    it is to be written, or None to leave it out; ``summary()`` says what it kept, left out and changed."""

    def __call__(self, record: dict[str, Any]) -> dict[str, Any] | None: ...

    def summary(self) -> dict[str, Any]: ...


DATASET_INFO = "dataset_info.json"

_ALPACA_INFO = {
    "formatting": "alpaca",
    "columns": {"prompt": "instruction", "query": "input", "response": "output"},
}
_SHAREGPT_INFO = {
    "formatting": "sharegpt",
    "columns": {"messages": "conversations"},
    "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"},
}


def dataset_name(run_dir: Path) -> str:
    """A dataset name from the run directory's name: letters, digits, _ and - only."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", run_dir.resolve().name).strip("_") or "distill"


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _row(fmt: str, record: dict[str, Any], target: str) -> dict[str, Any]:
    if fmt == "alpaca":
        return {
            "instruction": record["instruction"],
            "input": "",
            "output": target,
            "id": record["id"],
            "sample_index": record["sample_index"],
        }
    return {
        "conversations": [
            {"from": "human", "value": record["instruction"]},
            {"from": "gpt", "value": target},
        ],
        "id": record["id"],
        "sample_index": record["sample_index"],
    }


def run_state_warnings(run_dir: Path) -> list[str]:
    """What a user exporting this run should know: it is still being written, or it did not finish."""
    if is_being_written(run_dir):
        return [
            f"{run_dir}: a `distill generate` is still writing to this run: the export holds only the records "
            "written so far; export again when it has finished"
        ]
    try:
        summary = orjson.loads((run_dir / SUMMARY_NAME).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return [
            f"{run_dir}: no readable {SUMMARY_NAME}: the run may not have finished; the export holds what it wrote"
        ]
    if isinstance(summary, dict) and summary.get("status") != "complete":
        return [
            f"{run_dir}: the run ended with status {summary.get('status')!r} ({summary.get('done')} of "
            f"{summary.get('total')} done): rerun `distill generate` to finish it, then export again"
        ]
    return []


def export_dataset(
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    formats: tuple[str, ...] = FORMATS,
    with_thinking: bool = False,
    name: str | None = None,
    review: RecordSelection | None = None,
) -> dict[str, Any]:
    """Write the training files and dataset_info.json; return {name, rows, files, dataset_info, warnings}.

    Warnings (a run still being written or not finished) are also printed on stderr.
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: --run-dir: no such directory")
    unknown = [fmt for fmt in formats if fmt not in FORMATS]
    if unknown:
        raise UserError(f"--format: unknown format {unknown[0]!r} (choose from {', '.join(FORMATS)} or both)")
    if name is not None and not _NAME.match(name):
        raise UserError(
            f"--name: {name!r} must be a plain file name (letters, digits, '_', '-', '.'; no '/' and not "
            "starting with '.'), so every file stays inside --out-dir"
        )
    reader = RecordReader(run_dir, kinds=("accepted",))
    if not reader.shards():
        raise UserError(f"{run_dir}: no accepted-*.jsonl shards: run `distill generate` into it first")
    refuse_unsafe_location(out_dir, "--out-dir")
    warnings = run_state_warnings(run_dir)
    for warning in warnings:
        print(f"distill: warning: {warning}", file=sys.stderr)
    name = name or dataset_name(run_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{out_dir}: --out-dir: cannot create it: {exc.strerror}") from None
    existing_info = _read_dataset_info(out_dir)
    targets = {fmt: out_dir / f"{name}_{fmt}.jsonl" for fmt in formats}
    rows = 0
    with contextlib.ExitStack() as files:  # every file replaced only once all of them are written
        handles = {fmt: files.enter_context(replacing(path)) for fmt, path in targets.items()}
        for stored in reader:
            record = stored.model_dump()
            if review is not None and (record := review(record)) is None:
                continue
            target = record["full_output" if with_thinking else "output"]
            for fmt, handle in handles.items():
                handle.write(orjson.dumps(_row(fmt, record, target), option=orjson.OPT_APPEND_NEWLINE))
            rows += 1
    info = _write_dataset_info(
        out_dir,
        existing_info,
        {
            f"{name}_{fmt}": {
                "file_name": targets[fmt].name,
                **(_ALPACA_INFO if fmt == "alpaca" else _SHAREGPT_INFO),
            }
            for fmt in formats
        },
    )
    return {
        "name": name,
        "rows": rows,
        "with_thinking": with_thinking,
        "files": {fmt: str(path) for fmt, path in targets.items()},
        "dataset_info": str(info),
        "review": review.summary() if review is not None else None,
        "warnings": warnings,
    }


def _read_dataset_info(out_dir: Path) -> dict[str, Any]:
    """The existing dataset_info.json (checked before any file is written), or {}."""
    path = out_dir / DATASET_INFO
    if not path.exists():
        return {}
    try:
        existing = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise UserError(
            f"{path}: cannot read it as JSON ({exc}): fix or remove it, then export again"
        ) from None
    if not isinstance(existing, dict):
        raise UserError(
            f"{path}: holds a {type(existing).__name__}, not the mapping of dataset names LLaMA-Factory reads: "
            "fix or remove it, then export again"
        )
    return existing


def _write_dataset_info(out_dir: Path, existing: dict[str, Any], entries: dict[str, Any]) -> Path:
    merged = {**existing, **entries}
    return write_atomically(out_dir / DATASET_INFO, orjson.dumps(merged, option=orjson.OPT_INDENT_2))
