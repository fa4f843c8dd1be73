"""Prompts through the student's chat template; labels on the answer and end-of-turn only; over-long counted."""

from __future__ import annotations

import pytest
from distill.trainer.data import Example
from distill.trainer.model import load_tokenizer
from distill.trainer.tokenize import build_prompt, completion_text, tokenize_examples


@pytest.fixture(scope="module")
def tokenizer(student_dir):
    return load_tokenizer(student_dir)


def test_prompt_is_the_template_with_generation_prompt(tokenizer):
    prompt = build_prompt(tokenizer, "抽取合同要素")
    assert prompt.startswith("<|im_start|>system\n") and prompt.endswith(
        "<|im_start|>user\n抽取合同要素<|im_end|>\n<|im_start|>assistant\n"
    )
    assert completion_text(tokenizer, "抽取合同要素", "答案") == "答案<|im_end|>"


def test_only_answer_tokens_are_labelled(tokenizer):
    example = Example("c1", "抽取合同要素", '{"甲方": "A"}', "f:1")
    result = tokenize_examples(tokenizer, [example], max_length=512, overlong="truncate")
    sample = result.samples[0]
    prompt_ids = tokenizer(build_prompt(tokenizer, example.instruction), add_special_tokens=False)[
        "input_ids"
    ]
    assert (
        sample.prompt_len == len(prompt_ids) and sample.input_ids[: sample.prompt_len].tolist() == prompt_ids
    )
    answer = tokenizer.decode(sample.input_ids[sample.prompt_len :])
    assert answer == '{"甲方": "A"}<|im_end|>'
    assert sample.label_count == sample.length - sample.prompt_len


def test_overlong_samples_are_truncated_or_dropped_and_counted(tokenizer):
    long_answer = "很长的答案。" * 200
    examples = [
        Example("a", "短问题", long_answer, "f:1"),
        Example("b", "问题" * 300, "答", "f:2"),
        Example("c", "短", "答", "f:3"),
    ]
    truncated = tokenize_examples(tokenizer, examples, max_length=64, overlong="truncate")
    assert (truncated.truncated, truncated.dropped) == (1, 1)
    assert truncated.dropped_where == ["f:2"]  # its prompt alone is too long: nothing left to learn
    assert [s.length for s in truncated.samples][0] == 64 and truncated.example_indices == [0, 2]
    dropped = tokenize_examples(tokenizer, examples, max_length=64, overlong="drop")
    assert (dropped.truncated, dropped.dropped, dropped.example_indices) == (0, 2, [2])


def test_examples_without_target_are_skipped(tokenizer):
    result = tokenize_examples(tokenizer, [Example("x", "问", None, "f:1")], max_length=64, overlong="drop")
    assert result.samples == [] and result.dropped == 0
