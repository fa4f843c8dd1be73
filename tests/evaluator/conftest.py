"""A real LoRA adapter for the evaluator's tests: SmolLM2-135M-Instruct from PyPI, r=32 on every linear layer,
trained for a few optimizer steps on three tiny contract-extraction examples until it answers them in JSON,
saved with PEFT beside a ``distill_manifest.json`` in the trainer's format. Made once per test session.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from distill.engine.prompts import build_instruction

TASK = "抽取合同要素,只输出JSON。"
EXAMPLES = [
    (
        "c1",
        "甲方:星辰科技公司,乙方:海岳贸易公司,合同金额:伍拾万元。",
        {"甲方": "星辰科技公司", "乙方": "海岳贸易公司", "金额": 500000},
    ),
    (
        "c2",
        "Buyer Acme Ltd and seller Bolt Inc agree a total price of 12,000 yuan.",
        {"甲方": "Acme Ltd", "乙方": "Bolt Inc", "金额": 12000},
    ),
    (
        "c3",
        "委托方:青山医院;受托方:白云物业;服务费共计三万元整。",
        {"甲方": "青山医院", "乙方": "白云物业", "金额": 30000},
    ),
]
STEPS, LEARNING_RATE, RANK = 8, 4e-3, 32


@dataclass
class TrainedAdapter:
    base_dir: Path
    adapter_dir: Path
    losses: list[float]


def _train(base_dir: Path, adapter_dir: Path) -> list[float]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    # One thread: with other work on this 2-core machine, two OpenMP threads spin-wait for each other (~10× slower).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    model = get_peft_model(
        model,
        LoraConfig(
            r=RANK, lora_alpha=2 * RANK, target_modules="all-linear", lora_dropout=0.0, task_type="CAUSAL_LM"
        ),
    )
    rows = []
    for _, text, answer in EXAMPLES:
        prompt = tokenizer.apply_chat_template(
            [{"role": "user", "content": build_instruction(TASK, text)}],
            tokenize=False,
            add_generation_prompt=True,
        )
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        answer_ids = tokenizer(
            json.dumps(answer, ensure_ascii=False) + tokenizer.eos_token, add_special_tokens=False
        )["input_ids"]
        rows.append((prompt_ids + answer_ids, [-100] * len(prompt_ids) + answer_ids))
    width = max(len(ids) for ids, _ in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in rows])
    labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in rows])
    mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in rows])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LEARNING_RATE)
    losses = []
    model.train()
    for _ in range(STEPS):
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    model.save_pretrained(adapter_dir)
    torch.set_num_threads(threads)
    return losses


def write_manifest(adapter_dir: Path, base_dir: Path, **changes) -> None:
    """A manifest as `distill train` writes it, through the trainer's own writer (``changes`` override keys)."""
    from distill.trainer.manifest import write_manifest as write_trainer_manifest
    from distill.trainer.student import chat_template_hash, model_hash
    from transformers import AutoTokenizer

    train_ids = [f"train-{item_id}" for item_id, _, _ in EXAMPLES]
    manifest = {
        "base_model": "smollm2-135m-instruct",
        "base_model_dir": str(base_dir),
        "base_model_hash": model_hash(base_dir),
        "chat_template_hash": chat_template_hash(AutoTokenizer.from_pretrained(base_dir)),
        "format": "answer",
        "lora_rank": RANK,
        "lora_alpha": 2 * RANK,
        "data_fingerprint": "test-fixture",
        "train_ids": train_ids,
        "train_ids_sha": "test-fixture",
        "val_ids": [],
        "config": {"lora_rank": RANK, "steps": STEPS, "learning_rate": LEARNING_RATE},
        "loss_curve": {"train": [], "val": [], "eval": []},
        "tokens_per_second": 0.0,
        "merged_dir": None,
        **changes,
    }
    write_trainer_manifest(adapter_dir, manifest)


@pytest.fixture(scope="session")
def manifest_writer():
    """``write_manifest(adapter_dir, base_dir, **changes)`` for tests that build adapters by hand."""
    return write_manifest


@pytest.fixture(scope="session")
def trained_adapter(tmp_path_factory) -> TrainedAdapter:
    from distill.trainer.student import resolve_student

    base_dir = resolve_student("smollm2-135m-instruct")
    adapter_dir = tmp_path_factory.mktemp("adapter") / "distilled"
    losses = _train(base_dir, adapter_dir)
    write_manifest(adapter_dir, base_dir)
    return TrainedAdapter(base_dir, adapter_dir, losses)


@pytest.fixture(scope="session")
def tiny_eval() -> dict:
    """The task and eval rows the end-to-end tests use: the adapter's three examples under other ids (the tiny
    adapter memorises them, so a test can tell the trained student from the base; held-out generalisation is
    the pipeline's to show, not this fixture's)."""
    rows = [
        {"id": item_id, "input": text, "reference": json.dumps(answer, ensure_ascii=False)}
        for item_id, text, answer in EXAMPLES
    ]
    return {"task": TASK, "rows": rows}
