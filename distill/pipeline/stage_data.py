"""The data stage: the task's training inputs, its held-out set and the answers the reference teacher knows.

Writes ``data/train.jsonl`` (id, input), ``data/eval.jsonl`` (id, input, reference) and ``data/truth.jsonl``.
"""

from __future__ import annotations

from typing import Any

from distill.pipeline.context import StageContext
from distill.pipeline.contracts import make_contract_sets
from distill.pipeline.markers import stage_key

NAME = "data"


def check(context: StageContext) -> None:
    """The bundled task's settings are checked by its config model; nothing else to refuse."""


def key(context: StageContext) -> str:
    return stage_key(NAME, context.config.task.model_dump())


def run(context: StageContext) -> tuple[dict[str, Any], dict[str, Any]]:
    task = context.config.task
    sets = make_contract_sets(
        context.run_dir / "data",
        train_count=task.train,
        eval_count=task.eval,
        train_seed=task.train_seed,
        eval_seed=task.eval_seed,
        english_share=task.english_share,
    )
    outputs = {"train": sets.train_path, "eval": sets.eval_path, "truth": sets.truth_path}
    return outputs, {"train_inputs": sets.train_count, "eval_contracts": sets.eval_count}
