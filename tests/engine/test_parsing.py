"""Chain-of-thought parsing, Chinese and English, and the dataset's full_output format."""

from __future__ import annotations

from distill.engine.parsing import answer_of, format_full_output, parse_cot, split_full_output


def test_chinese_markers():
    text = "好的。\n【思考过程】\n1. 找出甲乙方\n2. 找出金额\n【最终答案】\n甲方:A公司;乙方:B公司"
    assert parse_cot(text) == ("1. 找出甲乙方\n2. 找出金额", "甲方:A公司;乙方:B公司")


def test_english_markers_are_matched_leniently():
    assert parse_cot("[Thinking]\nstep one\n[Final Answer]\nforty-two") == ("step one", "forty-two")
    assert parse_cot("[ thinking ] a [FINAL  ANSWER] b") == ("a", "b")


def test_missing_marker_is_none():
    assert parse_cot("【思考过程】只有思考") is None
    assert parse_cot("【最终答案】只有答案") is None
    assert parse_cot("plain text") is None
    # the answer marker must come after the thinking marker
    assert parse_cot("【最终答案】x【思考过程】y") is None


def test_full_output_round_trip():
    full = format_full_output("先分析", "结论")
    assert full == "【思考】先分析\n\n【答案】结论"
    assert split_full_output(full) == ("先分析", "结论")
    assert split_full_output("【答案】only") == ("", "only")
    assert split_full_output("no markers") is None


def test_answer_of_student_output():
    assert answer_of("【思考】x\n\n【答案】y") == "y"
    assert answer_of("[Thinking] x [Final Answer] y") == "y"
    assert answer_of("  bare answer ") == "bare answer"
