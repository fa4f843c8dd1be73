"""The bundled task's data: seeded synthetic contracts with known answers, and the files made from them.

``make_contract_sets`` writes, from two different seeds, the distillation inputs (``train.jsonl``: ``id``,
``input``, what ``distill generate`` reads) and an independent held-out set (``eval.jsonl``: ``id``,
``input``, ``reference``, what ``distill eval`` reads), plus ``truth.jsonl`` with every contract's answer
and the facts behind it, which only the reference teacher reads. The same seeds give the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from distill.errors import UserError
from distill.files import read_jsonl, write_jsonl
from distill.pipeline.contract_en import build_en_contract
from distill.pipeline.contract_parts import FIELDS
from distill.pipeline.contract_zh import build_zh_contract


@dataclass(frozen=True)
class Contract:
    id: str
    language: str  # "zh" or "en"
    text: str
    truth: dict[str, str]  # the canonical answer, keys in FIELDS order
    facts: dict[str, Any]  # how the truth is written in the text, and its look-alikes


def text_key(text: str) -> str:
    """Identity of a contract text, whitespace-insensitive (a template may re-wrap lines)."""
    return hashlib.sha256("".join(text.split()).encode("utf-8")).hexdigest()[:24]


def generate_contracts(split: str, count: int, seed: int, english_share: float = 0.25) -> Iterator[Contract]:
    """``count`` contracts with ids ``{split}-00001``…, the same for the same (split, count, seed)."""
    rng = random.Random(f"distill-contracts/{seed}")
    seen: set[str] = set()
    index = 0
    while index < count:
        language = "en" if rng.random() < english_share else "zh"
        body = build_en_contract(rng) if language == "en" else build_zh_contract(rng)
        key = text_key(body.text)
        if key in seen:  # astronomically rare, but two identical inputs would be one input twice
            continue
        seen.add(key)
        index += 1
        truth = {name: body.truth[name] for name in FIELDS}
        yield Contract(
            id=f"{split}-{index:05d}", language=language, text=body.text, truth=truth, facts=body.facts
        )


def canonical_answer(truth: dict[str, str]) -> str:
    """The answer JSON exactly as the task description asks for it: one line, keys in FIELDS order."""
    return json.dumps({name: truth[name] for name in FIELDS}, ensure_ascii=False)


@dataclass(frozen=True)
class ContractSets:
    train_path: Path
    eval_path: Path
    truth_path: Path
    train_count: int
    eval_count: int


def make_contract_sets(
    out_dir: str | os.PathLike,
    *,
    train_count: int,
    eval_count: int,
    train_seed: int = 1,
    eval_seed: int = 1001,
    english_share: float = 0.25,
) -> ContractSets:
    """Write train.jsonl, eval.jsonl and truth.jsonl under ``out_dir``; the two sets share no id or text."""
    if train_seed == eval_seed:
        raise UserError(
            "contracts: train_seed and eval_seed must differ, or the held-out set would be the training set"
        )
    if train_count < 1 or eval_count < 1:
        raise UserError("contracts: train_count and eval_count must be at least 1")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train = list(generate_contracts("train", train_count, train_seed, english_share))
    train_keys = {text_key(contract.text) for contract in train}
    # Drawn independently from another seed; a text that happens to equal a training text is skipped, so the
    # held-out set never contains an input the student was trained on.
    held_out = []
    for contract in generate_contracts("eval", eval_count * 2 + 10, eval_seed, english_share):
        if text_key(contract.text) not in train_keys:
            held_out.append(contract)
        if len(held_out) == eval_count:
            break
    write_jsonl(out / "train.jsonl", [{"id": c.id, "input": c.text} for c in train])
    write_jsonl(
        out / "eval.jsonl",
        [{"id": c.id, "input": c.text, "reference": canonical_answer(c.truth)} for c in held_out],
    )
    write_jsonl(out / "truth.jsonl", [asdict(c) for c in train + held_out])
    return ContractSets(
        out / "train.jsonl", out / "eval.jsonl", out / "truth.jsonl", len(train), len(held_out)
    )


def load_truth(path: str | os.PathLike) -> list[Contract]:
    """Read a truth.jsonl written by `make_contract_sets`."""
    contracts = read_jsonl(path, lambda row: Contract(**row), "a contract record written by distill")
    if not contracts:
        raise UserError(f"{path}: no contracts in this file")
    return contracts
