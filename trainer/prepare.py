"""Everything before the model: resolve the student, read and check the data, split, tokenise, count.

Runs the same way on every rank (it is deterministic), so no rank needs to receive data from another.
All user mistakes surface here, before gigabytes of weights are loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from distill.trainer.config import TrainConfig
from distill.trainer.data import Example, LoadedData, check_no_overlap, load_examples, split_validation
from distill.trainer.model import load_tokenizer
from distill.trainer.student import resolve_student
from distill.trainer.tokenize import TokenizedSet, tokenize_examples

from distill.errors import UserError


@dataclass
class Prepared:
    model_dir: Path
    tokenizer: object
    data: LoadedData
    train_examples: list[Example]
    val_examples: list[Example]
    eval_examples: list[Example]
    train: TokenizedSet
    val: TokenizedSet
    eval: TokenizedSet | None
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def train_ids(self) -> list[str]:
        return sorted({self.train_examples[i].id for i in self.train.example_indices})


def prepare(config: TrainConfig) -> Prepared:
    data = load_examples(config.data, config.format, role="data")
    eval_examples: list[Example] = []
    if config.eval_file:
        eval_examples = load_examples(
            [config.eval_file], config.format, role="eval_file", need_target=False
        ).examples
        check_no_overlap(data.examples, eval_examples)
    train_examples, val_examples = split_validation(data.examples, config.val_size, config.seed)
    model_dir = resolve_student(config.base_model)
    tokenizer = load_tokenizer(model_dir)
    train = tokenize_examples(tokenizer, train_examples, config.max_length, config.overlong)
    if not train.samples:
        raise UserError(
            f"{', '.join(config.data)}: every training example is longer than max_length "
            f"{config.max_length} even without its answer; raise max_length"
        )
    val = tokenize_examples(tokenizer, val_examples, config.max_length, config.overlong)
    evaluation = None
    if any(ex.target for ex in eval_examples):
        evaluation = tokenize_examples(tokenizer, eval_examples, config.max_length, config.overlong)
    counts = {
        "examples": len(data.examples),
        "train_examples": len(train_examples),
        "val_examples": len(val_examples),
        "eval_examples": len(eval_examples),
        "train_samples": len(train.samples),
        "train_tokens": train.tokens,
        "truncated": train.truncated + val.truncated,
        "dropped_overlong": train.dropped + val.dropped,
        "torn_lines_skipped": data.torn_lines,
    }
    return Prepared(
        model_dir,
        tokenizer,
        data,
        train_examples,
        val_examples,
        eval_examples,
        train,
        val,
        evaluation,
        counts,
    )
