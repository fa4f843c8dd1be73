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

import os
import re
from pathlib import Path
from typing import Any

import orjson
from distill.engine.shards import list_shards

from distill.errors import UserError
from distill.review.decisions import ReviewFilter

FORMATS = ("alpaca", "sharegpt")
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


def export_dataset(
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    formats: tuple[str, ...] = FORMATS,
    with_thinking: bool = False,
    name: str | None = None,
    review: str | None = None,
) -> dict[str, Any]:
    """Write the training files and dataset_info.json; return {name, rows, files, dataset_info}."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: --run-dir: no such directory")
    unknown = [fmt for fmt in formats if fmt not in FORMATS]
    if unknown:
        raise UserError(f"--format: unknown format {unknown[0]!r} (choose from {', '.join(FORMATS)} or both)")
    shards = list_shards(run_dir, "accepted")
    if not shards:
        raise UserError(f"{run_dir}: no accepted-*.jsonl shards: run `distill generate` into it first")
    # Human review (`distill review`): keep only what its decisions allow, edited answers in place.
    reviewed = ReviewFilter(run_dir, review) if review is not None else None
    name = name or dataset_name(run_dir)
    field = "full_output" if with_thinking else "output"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{out_dir}: --out-dir: cannot create it: {exc.strerror}") from None
    targets = {fmt: out_dir / f"{name}_{fmt}.jsonl" for fmt in formats}
    temporaries = {fmt: path.with_name(path.name + ".tmp") for fmt, path in targets.items()}
    handles = {fmt: temporaries[fmt].open("wb") for fmt in formats}
    rows = 0
    try:
        for shard in shards:
            with shard.open("rb") as records:
                for number, line in enumerate(records, start=1):
                    if not line.strip():
                        continue
                    try:
                        record = orjson.loads(line)
                        if reviewed is not None and (record := reviewed(record)) is None:
                            continue
                        target = record[field]
                    except (orjson.JSONDecodeError, KeyError) as exc:
                        raise UserError(f"{shard}:{number}: {field}: unreadable record ({exc})") from None
                    for fmt, handle in handles.items():
                        handle.write(
                            orjson.dumps(_row(fmt, record, target), option=orjson.OPT_APPEND_NEWLINE)
                        )
                    rows += 1
    finally:
        for handle in handles.values():
            handle.close()
    for fmt in formats:
        os.replace(temporaries[fmt], targets[fmt])
    info = _merge_dataset_info(
        out_dir,
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
        "review": reviewed.summary() if reviewed is not None else None,
    }


def _merge_dataset_info(out_dir: Path, entries: dict[str, Any]) -> Path:
    path = out_dir / DATASET_INFO
    existing: dict[str, Any] = {}
    if path.exists():
        try:
            existing = orjson.loads(path.read_bytes())
        except orjson.JSONDecodeError as exc:
            raise UserError(f"{path}: existing dataset_info.json is not valid JSON ({exc})") from None
    existing.update(entries)
    temporary = path.with_name(DATASET_INFO + ".tmp")
    temporary.write_bytes(orjson.dumps(existing, option=orjson.OPT_INDENT_2))
    os.replace(temporary, path)
    return path
