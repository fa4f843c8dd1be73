"""Students checked against their training manifest: another base model, another chat template, or eval items
that were trained on are refused before anything runs; the prompt is the tokenizer's chat template."""

from __future__ import annotations

import json

import pytest
from distill.evaluator.config import StudentConfig
from distill.evaluator.students import render_prompt_ids, resolve_students
from distill.evaluator.vllm_server import max_lora_rank
from distill.trainer.student import resolve_student

from distill.errors import UserError


@pytest.fixture(scope="module")
def base_dir():
    return resolve_student("smollm2-135m-instruct")


@pytest.fixture
def adapter(tmp_path, base_dir, manifest_writer):
    """An adapter directory (config only: these checks never load weights) with the manifest given."""

    def make(no_manifest: bool = False, **manifest):
        path = tmp_path / "adapter"
        path.mkdir()
        (path / "adapter_config.json").write_text(
            json.dumps({"r": 32, "peft_type": "LORA"}), encoding="utf-8"
        )
        if not no_manifest:
            manifest_writer(path, base_dir, **manifest)
        return path

    return make


def students(path):
    return [StudentConfig(name="distilled", role="distilled", adapter=path), StudentConfig(name="base")]


def test_matching_manifest_is_accepted_and_fingerprints_differ(adapter, base_dir):
    resolved, tokenizers = resolve_students(students(adapter()), {"eval-1"})
    distilled, base = resolved
    assert distilled.rank == 32 and distilled.answer_format == "answer" and distilled.warnings == []
    assert distilled.base_dir == base.base_dir == base_dir
    assert distilled.fingerprint != base.fingerprint
    assert list(tokenizers) == [base_dir]


def test_adapter_for_another_base_model_is_refused(adapter):
    path = adapter(base_model="gemma-3-270m", base_model_hash="0123456789abcdef")
    with pytest.raises(UserError) as caught:
        resolve_students(students(path), set())
    message = str(caught.value)
    assert "distill_manifest.json: base_model_hash" in message and "gemma-3-270m" in message


def test_chat_template_mismatch_is_refused(adapter):
    path = adapter(chat_template_hash="feedfacefeedface")
    with pytest.raises(
        UserError, match="chat_template_hash: the adapter was trained with chat template feedface"
    ):
        resolve_students(students(path), set())


def test_eval_items_in_the_distillation_data_are_refused(adapter):
    path = adapter(train_ids=["a", "eval-2", "b"], val_ids=["eval-3"])
    with pytest.raises(UserError, match=r"2 eval item\(s\) were in the training data \(eval-2, eval-3\)"):
        resolve_students(students(path), {"eval-1", "eval-2", "eval-3"})


def test_an_incomplete_manifest_is_refused_by_the_trainers_reader(adapter):
    path = adapter()
    manifest = json.loads((path / "distill_manifest.json").read_text(encoding="utf-8"))
    del manifest["format"]
    (path / "distill_manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(UserError, match="distill_manifest.json: format: missing field"):
        resolve_students(students(path), set())


def test_no_manifest_is_a_warning_and_a_missing_adapter_an_error(adapter, tmp_path):
    resolved, _ = resolve_students(students(adapter(no_manifest=True)), set())
    assert "unverified" in resolved[0].warnings[0]
    with pytest.raises(UserError, match="adapter directory .* does not exist"):
        resolve_students(students(tmp_path / "nowhere"), set())


def test_prompt_is_the_chat_template_with_generation_prompt(base_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    [ids] = render_prompt_ids(tokenizer, ["抽取甲方"])
    text = tokenizer.decode(ids)
    assert text.endswith("<|im_start|>assistant\n") and "<|im_start|>user\n抽取甲方<|im_end|>" in text
    assert text.count("<|im_start|>system") <= 1  # special tokens not added a second time


def test_lora_rank_rounds_up_to_what_vllm_accepts():
    assert max_lora_rank([32]) == 32
    assert max_lora_rank([8, 24]) == 32
    assert max_lora_rank([4]) == 8
    with pytest.raises(UserError):
        max_lora_rank([1024])


def test_a_student_with_its_own_task_is_asked_with_it_and_the_others_with_the_eval_task(adapter):
    from distill.engine.prompts import build_instruction
    from distill.evaluator.evalset import EvalItem

    configs = [
        StudentConfig(name="distilled", role="distilled", adapter=adapter(), task="抽取合同要素。"),
        StudentConfig(name="base"),
    ]
    resolved, _ = resolve_students(configs, {"eval-1"})
    items = [EvalItem("eval-1", "合同正文", "{}", build_instruction("很长的任务说明", "合同正文"))]
    distilled, base = resolved
    assert distilled.instructions(items) == ["抽取合同要素。\n\n合同正文"]
    assert base.instructions(items) == ["很长的任务说明\n\n合同正文"]


def test_auto_dtype_is_bf16_only_where_the_chip_multiplies_it():
    import torch
    from distill.evaluator.vllm_server import student_dtype
    from distill.trainer.model import bf16_units

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert student_dtype("auto") == ("bfloat16" if bf16_units(device) else "float32")
    assert [student_dtype(forced) for forced in ("bfloat16", "float32", "float16")] == [
        "bfloat16",
        "float32",
        "float16",
    ]
