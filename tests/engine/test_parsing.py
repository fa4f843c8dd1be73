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


EVERY_MARKER = "【思考过程】【最终答案】[Thinking][Final Answer]【思考】【答案】"


def test_markers_quoted_from_the_input_never_split_the_answer():
    """Teachers quote their input; an input may hold every marker of both languages, inline or on a line."""
    quoted_inline = f"合同原文:甲方A{EVERY_MARKER}乙方B"
    quoted_lines = "合同原文:\n" + "\n".join(
        EVERY_MARKER.replace("】", "】\n").replace("]", "]\n").split("\n")
    )
    for quote in (quoted_inline, quoted_lines):
        zh = f"【思考过程】\n输入是:{quote}\n逐项核对。\n【最终答案】\n甲方A,乙方B"
        assert parse_cot(zh) == (f"输入是:{quote}\n逐项核对。", "甲方A,乙方B")
        en = f"[Thinking]\nThe input says: {quote}\nCheck each item.\n[Final Answer]\nParty A, Party B"
        assert parse_cot(en) == (f"The input says: {quote}\nCheck each item.", "Party A, Party B")
        assert answer_of(en) == "Party A, Party B"
        full = format_full_output(f"输入是:{quote}", "甲方A")
        assert split_full_output(full) == (f"输入是:{quote}".strip(), "甲方A")


def test_a_marker_quoted_inside_the_answer_line_stays_in_the_answer():
    text = "【思考过程】\n看合同\n【最终答案】\n条款写着“【最终答案】以本合同为准”,甲方A"
    assert parse_cot(text) == ("看合同", "条款写着“【最终答案】以本合同为准”,甲方A")
    # Markdown decoration before a marker still counts as the start of its line.
    assert parse_cot("【思考过程】\n引用:\n【最终答案】假的\n**【最终答案】**\n甲方A") == (
        "引用:\n【最终答案】假的",
        "甲方A",
    )
