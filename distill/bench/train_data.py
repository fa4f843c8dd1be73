"""Benchmark data: engine-like records for the real student, random token ids for a random-weight model.

Engine-like: contracts of varied length go through the engine's own student instruction
(`distill.engine.prompts.build_instruction`) and are written as engine records (the fields `distill generate`
writes, thinking from the fake teacher's text) whose answer extracts every clause; trained in answer format,
whole samples spread evenly over [lo, hi] tokens. Samples are stored as one .npz that every side
of the benchmark reads, so both train on identical token ids and labels.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np

from distill.engine.parsing import format_full_output, parse_cot
from distill.engine.prompts import build_instruction
from distill.engine.records import AcceptedRecord, Usage
from distill.testing.fake_teacher_answers import cot_answer
from distill.trainer.tokenize import Sample, build_prompt, completion_text

TASK = "抽取合同要素,以JSON输出"


def _clause(rng: random.Random, number: int) -> dict:
    return {"条": number, "金额": rng.randint(1, 999) * 100}


def _contract_text(clauses: list[dict]) -> str:
    return "".join(f"第{c['条']}条 付款{c['金额']}元。" for c in clauses) or "本合同由双方签订。"


def engine_like_records(path: Path, tokenizer, count: int, lo: int, hi: int, seed: int = 0) -> Path:
    """Write ``count`` engine records whose rendered answer-format length is spread over [lo, hi] tokens.

    The contract grows clause by clause until the sample reaches its drawn length; the answer extracts
    every clause, so prompt and answer lengths both vary, as they do for a real extraction task.
    """
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as handle:
        for index in range(count):
            target_len = rng.randint(lo, hi)
            clauses: list[dict] = []
            while True:
                instruction = build_instruction(TASK, f"合同{index}:{_contract_text(clauses)}")
                output = json.dumps({"合同": index, "条款": clauses}, ensure_ascii=False)
                rendered = build_prompt(tokenizer, instruction) + completion_text(
                    tokenizer, instruction, output
                )
                if (
                    len(tokenizer(rendered, add_special_tokens=False)["input_ids"]) >= target_len
                    or len(clauses) > 200
                ):
                    break
                clauses.append(_clause(rng, len(clauses) + 1))
            thinking, _ = parse_cot(cot_answer(f"【思考过程】{instruction}", f"c{index}#0", 0.3))
            record = AcceptedRecord(
                id=f"c{index}",
                sample_index=0,
                instruction=instruction,
                thinking=thinking,
                output=output,
                full_output=format_full_output(thinking, output),
                source_model="fake-teacher",
                generated_at="2026-01-01T00:00:00Z",
                temperature=0.3,
                usage=Usage(prompt_tokens=0, completion_tokens=0),
                latency_ms=0.0,
                finish_reason="stop",
            )
            handle.write(json.dumps(record.model_dump(exclude_none=True), ensure_ascii=False) + "\n")
    return path


def random_samples(count: int, lo: int, hi: int, vocab: int, seed: int = 0) -> list[Sample]:
    """Random token ids of uniform length in [lo, hi], every token but the first a label (the GPU anchor's
    setting: its script trains on all tokens)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(lo, hi + 1, size=count)
    return [Sample(rng.integers(3, vocab, size=int(n), dtype=np.int64), 1) for n in lengths]


def save_samples(samples: list[Sample], path: Path) -> Path:
    np.savez(
        path,
        ids=np.concatenate([s.input_ids for s in samples]),
        lengths=np.array([s.length for s in samples]),
        prompt_lens=np.array([s.prompt_len for s in samples]),
    )
    return path


def load_samples(path: Path) -> list[Sample]:
    data = np.load(path)
    bounds = np.concatenate([[0], np.cumsum(data["lengths"])])
    return [
        Sample(data["ids"][bounds[i] : bounds[i + 1]].astype(np.int64), int(data["prompt_lens"][i]))
        for i in range(len(data["lengths"]))
    ]
