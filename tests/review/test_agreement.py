"""Sample agreement: JSON answers by matching fields, texts by equality or bigram cosine."""

from __future__ import annotations

import pytest

from distill.review.agreement import agreements, similarity


def test_json_answers_agree_on_the_share_of_matching_fields():
    a = '{"甲方": "星河科技", "乙方": "云帆贸易", "金额": "10万元"}'
    b = '{"乙方": "云帆贸易", "甲方": "星河科技", "金额": "12万元"}'
    assert similarity(a, b) == pytest.approx(2 / 3)
    assert similarity(a, a.replace(" ", "")) == 1.0  # formatting does not count


def test_texts_agree_when_equal_after_normalisation_else_by_bigram_cosine():
    assert similarity("The Answer  is 42", "the answer is 42") == 1.0
    assert 0 < similarity("合同金额为十万元", "合同金额为二十万元") < 1
    assert similarity("abc", "xyz") == 0.0


def test_each_answer_gets_its_mean_agreement_with_the_others():
    same = '{"k": "v"}'
    other = '{"k": "w"}'
    assert agreements([same, same, other]) == [0.5, 0.5, 0.0]
    assert agreements([same]) == [None]
