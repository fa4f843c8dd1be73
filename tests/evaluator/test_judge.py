"""Judge replies: numbers, number words, labelled scores, garbage (a missing score, never 5.0), pairwise."""

from __future__ import annotations

import pytest
from distill.evaluator.calls import Answer
from distill.evaluator.evalset import EvalItem
from distill.evaluator.grading import read_pairwise
from distill.evaluator.judge import (
    AMBIGUOUS,
    EMPTY,
    NO_NUMBER,
    OUT_OF_RANGE,
    SCORE_TEMPLATE,
    TIE,
    combine_orders,
    judges_itself,
    parse_preference,
    parse_score,
    score_prompt,
)


@pytest.mark.parametrize(
    ("reply", "score"),
    [
        ("8", 8.0),
        (" 8.5\n", 8.5),
        ("8/10", 8.0),
        ("85/100", 8.5),
        ("分数:8", 8.0),
        ("分数：7", 7.0),  # full-width colon
        ("得分为 6.5 分", 6.5),
        ("Score: 7", 7.0),
        ("**9**", 9.0),
        ("８", 8.0),  # full-width digit
        ("10分", 10.0),
        ("0", 0.0),
        ("I'd rate it 6 out of 10: two fields are wrong.", 6.0),
        ("只输出0到10的分数:7", 7.0),  # the judge echoed the prompt's last line
        ("Eight.", 8.0),
        ("score: ten", 10.0),
        ("八分", 8.0),
    ],
)
def test_scores_are_read(reply, score):
    parsed = parse_score(reply)
    assert parsed.value == score and parsed.problem is None


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        ("", EMPTY),
        ("   ", EMPTY),
        (None, EMPTY),
        ("The answer is excellent.", NO_NUMBER),
        ("这个答案十分准确", NO_NUMBER),  # 十分 means "very" here, not ten points
        ("No one could do better", NO_NUMBER),  # "one" in prose is not a score
        ("7 or 8", AMBIGUOUS),
        ("Answer A gets 6, answer B gets 9", AMBIGUOUS),
        ("11", OUT_OF_RANGE),
        ("-2", OUT_OF_RANGE),
        ("150/100", OUT_OF_RANGE),
    ],
)
def test_garbage_is_a_missing_score_with_a_reason(reply, problem):
    parsed = parse_score(reply)
    assert parsed.value is None
    assert parsed.problem == problem


def test_the_prompt_is_the_seeds():
    assert SCORE_TEMPLATE == "问题:{question}\n参考答案:{reference}\n待评估答案:{answer}\n只输出0到10的分数:"
    assert score_prompt("Q", "R", "A") == "问题:Q\n参考答案:R\n待评估答案:A\n只输出0到10的分数:"


def test_pairwise_verdicts_and_both_orders():
    assert parse_preference("A") == "A"
    assert parse_preference("回答B更好") == "B"
    assert parse_preference("平局") == TIE
    assert parse_preference("It's a tie.") == TIE
    assert parse_preference("A and B") is None
    assert parse_preference("no idea") is None
    # Teacher first "A" = teacher; student first "B" = teacher: consistent.
    assert combine_orders("A", "B") == ("teacher", False)
    assert combine_orders("B", "A") == ("student", False)
    assert combine_orders(TIE, TIE) == (TIE, False)
    # Position bias: the judge always picks the first answer → the orders disagree → tie.
    assert combine_orders("A", "A") == (TIE, True)
    # One order names a winner, the other a tie: a disagreement whichever order came first.
    assert combine_orders(TIE, "A") == (TIE, True)
    assert combine_orders("A", TIE) == (TIE, True)
    assert combine_orders("B", TIE) == (TIE, True)
    assert combine_orders("A", None) is None


def test_self_preference_detected_across_url_spellings():
    assert judges_itself("http://h:1/v1/", "m", "http://h:1", "m")
    assert not judges_itself("http://h:1/v1", "judge-model", "http://h:1/v1", "m")


def test_pairwise_counts_every_order_disagreement():
    items = [EvalItem(f"i{n}", "input", "reference", "question") for n in range(5)]
    verdicts = {
        "i0": ("A", "B"),
        "i1": ("平局", "A"),
        "i2": ("A", "平局"),
        "i3": ("A", "A"),
        "i4": ("平局", "平局"),
    }
    replies = {}
    for item_id, (teacher_first, student_first) in verdicts.items():
        for order, text in (("tf", teacher_first), ("sf", student_first)):
            replies[f"pair|s|{item_id}|{order}"] = Answer(text, "stop", 10, 1, 5.0)
    counts = read_pairwise("s", items, replies)
    assert counts["order_disagreements"] == 3  # (tie, A), (A, tie) and (A, A)
    assert (counts["teacher_wins"], counts["student_wins"], counts["ties"]) == (1, 0, 4)
