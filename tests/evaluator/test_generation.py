"""Student generation with the transformers fallback: outputs in eval-set order, cached per (model, adapter,
prompt, settings) so a second generator generates nothing, and over-long prompts counted instead of sent."""

from __future__ import annotations

import pytest
from distill.evaluator.calls import CallCache
from distill.evaluator.config import GenerationConfig, StudentConfig
from distill.evaluator.evalset import EvalItem
from distill.evaluator.generation import PROMPT_TOO_LONG, StudentGenerator
from distill.evaluator.students import resolve_students


def item(item_id: str, text: str) -> EvalItem:
    return EvalItem(item_id, text, "ref", text)


@pytest.fixture(scope="module")
def base_student():
    students, tokenizers = resolve_students([StudentConfig(name="base")], set())
    return students, tokenizers


def test_fallback_generates_in_order_then_reads_the_cache(base_student, tmp_path):
    students, tokenizers = base_student
    items = [item("a", "Say hello."), item("b", "What is 2 + 2?"), item("long", "word " * 400)]
    config = GenerationConfig(backend="transformers", max_new_tokens=6, max_model_len=128, cpu_threads=1)
    with CallCache(tmp_path / "students.jsonl") as cache:
        generator = StudentGenerator(students, tokenizers, items, config, cache, tmp_path / "work")
        assert generator.to_generate == 2
        results = generator.wait()["base"]
    assert [r is not None for r in results] == [True, True, False]
    assert all(0 < r.completion_tokens <= 6 and r.text for r in results[:2])
    assert generator.summary()["problems"] == {"base": {PROMPT_TOO_LONG: 1}}
    with CallCache(tmp_path / "students.jsonl") as cache:
        again = StudentGenerator(students, tokenizers, items, config, cache, tmp_path / "work")
        assert again.to_generate == 0 and again.cached == 2
        assert [r.text for r in again.wait()["base"][:2]] == [r.text for r in results[:2]]
    with CallCache(tmp_path / "students.jsonl") as cache:  # other settings, other outputs: not reused
        longer = GenerationConfig(backend="transformers", max_new_tokens=7, max_model_len=128, cpu_threads=1)
        assert (
            StudentGenerator(students, tokenizers, items, longer, cache, tmp_path / "work").to_generate == 2
        )


def test_a_student_with_its_own_task_generates_from_its_own_prompt(tmp_path):
    from distill.engine.prompts import build_instruction

    configs = [StudentConfig(name="plain"), StudentConfig(name="own", task="Answer in one word.")]
    students, tokenizers = resolve_students(configs, set())
    items = [EvalItem("a", "Say hello.", "ref", build_instruction("Be verbose.", "Say hello."))]
    config = GenerationConfig(backend="transformers", max_new_tokens=4, max_model_len=128, cpu_threads=1)
    with CallCache(tmp_path / "students.jsonl") as cache:
        generator = StudentGenerator(students, tokenizers, items, config, cache, tmp_path / "work")
        prompts = {p.student.name: p.prompt_ids for group in generator._groups for p in group.pending}
    decoded = {name: tokenizers[students[0].base_dir].decode(ids) for name, ids in prompts.items()}
    assert "Be verbose.\n\nSay hello." in decoded["plain"] and "Answer in one word." not in decoded["plain"]
    assert "Answer in one word.\n\nSay hello." in decoded["own"] and "Be verbose." not in decoded["own"]
