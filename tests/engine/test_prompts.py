"""Teacher templates and the student's instruction."""

from __future__ import annotations

import pytest
from distill.engine.prompts import build_instruction, estimate_prompt_tokens, load_template, render_prompt

from distill.errors import UserError


def test_chinese_template_is_the_seeds():
    template = load_template("zh")
    prompt = render_prompt(template, "抽取合同要素", "甲方:A公司")
    assert prompt.startswith(
        "你是一个专家级AI助手。请完成以下任务,并展示你的思考过程。\n任务说明:抽取合同要素\n"
    )
    assert "输入内容:\n甲方:A公司\n请按以下格式回答:\n【思考过程】\n" in prompt
    assert prompt.index("【思考过程】") < prompt.index("【最终答案】")


def test_english_template_asks_for_the_english_markers():
    prompt = render_prompt(load_template("en"), "Extract the parties", "Contract text")
    assert "Task: Extract the parties" in prompt and "Input:\nContract text" in prompt
    assert "[Thinking]" in prompt and "[Final Answer]" in prompt


def test_braces_in_the_input_are_left_alone(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("Do {task} on:\n{input}\nEnd.", encoding="utf-8")
    prompt = render_prompt(load_template(str(path)), "extract", '{"a": "{task}"}')
    assert prompt == 'Do extract on:\n{"a": "{task}"}\nEnd.'


def test_custom_template_needs_an_input_placeholder(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("no placeholder here", encoding="utf-8")
    with pytest.raises(UserError, match=r"t.txt: template: has no \{input\} placeholder"):
        load_template(str(path))
    with pytest.raises(UserError, match="neither a built-in template"):
        load_template(str(tmp_path / "missing.txt"))


def test_instruction_contract():
    assert build_instruction("  抽取要素 ", "合同文本") == "抽取要素\n\n合同文本"
    assert build_instruction("", "just the input") == "just the input"


def test_token_estimate_leans_high():
    assert estimate_prompt_tokens("合同" * 100) >= 200
    assert estimate_prompt_tokens("word " * 100) >= 125
