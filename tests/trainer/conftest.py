"""Shared trainer fixtures: a tiny random Llama beside the real student's tokenizer, engine-format records,
and a small dataset produced by the real engine against the fake teacher over HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def write_records(path: Path, count: int, *, start: int = 0, filler: int = 0) -> Path:
    """Engine records (the fields `distill generate` writes), seeded and varied in length."""
    with path.open("w", encoding="utf-8") as handle:
        for i in range(start, start + count):
            thinking = "先找甲方和乙方,再找金额。" * (1 + i % 3)
            output = json.dumps({"甲方": f"A{i}公司", "乙方": "B公司", "金额": i * 10}, ensure_ascii=False)
            record = {
                "id": f"c{i}",
                "sample_index": 0,
                "instruction": f"抽取合同要素\n\n合同{i}:甲方A{i}公司,乙方B公司,金额{i * 10}元。"
                + "条款。" * (i % 5 + filler),
                "thinking": thinking,
                "output": output,
                "full_output": f"【思考】{thinking}\n\n【答案】{output}",
                "source_model": "fake-teacher",
                "generated_at": "2026-01-01T00:00:00Z",
                "temperature": 0.3,
                "usage": {"prompt_tokens": 10, "completion_tokens": 20},
                "latency_ms": 5.0,
                "finish_reason": "stop",
            }
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


@pytest.fixture
def records():
    """``records(path, count, start=0, filler=0)`` writes engine records and returns the path."""
    return write_records


@pytest.fixture(scope="session")
def student_dir() -> Path:
    from distill.trainer.student import resolve_student

    return resolve_student()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, student_dir) -> Path:
    """A 2-layer Llama with random weights and the real student's tokenizer and chat template."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    directory = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = AutoTokenizer.from_pretrained(student_dir)
    config = LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=len(tokenizer),
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def engine_dataset(tmp_path_factory) -> Path:
    """`distill generate`'s run directory: the engine against the fake teacher, over real HTTP."""
    from distill.engine.config import GenerateConfig
    from distill.engine.runner import run_generation

    from distill.endpoint import Endpoint
    from distill.testing.fake_teacher import FakeTeacherSettings, start_in_thread

    root = tmp_path_factory.mktemp("engine-run")
    inputs = root / "inputs.jsonl"
    with inputs.open("w", encoding="utf-8") as handle:
        for i in range(12):
            handle.write(
                json.dumps(
                    {"id": f"k{i}", "input": f"甲方A{i}公司,乙方B公司,金额{i * 100}元。"}, ensure_ascii=False
                )
                + "\n"
            )
    url, stop = start_in_thread(FakeTeacherSettings(latency_ms=1))
    try:
        config = GenerateConfig(
            input=inputs,
            output_dir=root / "run",
            teacher=Endpoint(base_url=url + "/v1", model="fake-teacher", api_key_env=None, concurrency=8),
            task="抽取合同要素",
        )
        summary = run_generation(config, progress=False)
    finally:
        stop()
    assert summary["status"] == "complete", summary
    return root / "run"
