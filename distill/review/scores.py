"""``<run dir>/review/scores.jsonl``: the judge's 0–10 score of each accepted record (or why there is none).

Rewritten whole (atomically) after each scoring pass; the judge's replies themselves are cached per request
in ``judge-cache.jsonl``, so a rerun pays only for records not scored yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import orjson

from distill.files import replacing
from distill.review.decisions import REVIEW_DIR
from distill.review.log import read_entries

SCORES_NAME = "scores.jsonl"


@dataclass(frozen=True, slots=True)
class Score:
    score: float | None
    problem: str | None = None  # why there is no score: the judge's reply said none, or the call failed


def scores_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / REVIEW_DIR / SCORES_NAME


def mtime(run_dir: str | Path) -> float | None:
    try:
        return scores_path(run_dir).stat().st_mtime
    except FileNotFoundError:
        return None


def read(run_dir: str | Path) -> dict[tuple[str, int], Score]:
    path = scores_path(run_dir)
    scores = {}
    for _, entry in read_entries(path):
        scores[(str(entry["id"]), int(entry["sample_index"]))] = Score(
            entry.get("score"), entry.get("problem")
        )
    return scores


def write(run_dir: str | Path, scores: dict[tuple[str, int], Score], model: str) -> Path:
    path = scores_path(run_dir)
    with replacing(path) as handle:
        for (row_id, sample_index), entry in scores.items():
            handle.write(
                orjson.dumps(
                    {
                        "id": row_id,
                        "sample_index": sample_index,
                        "score": entry.score,
                        "problem": entry.problem,
                        "model": model,
                    },
                    option=orjson.OPT_APPEND_NEWLINE,
                )
            )
    return path
