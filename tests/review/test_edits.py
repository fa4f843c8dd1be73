"""An edited answer meets the engine's parser and filters before it is saved."""

from __future__ import annotations

from distill.engine.config import FilterConfig

from distill.review.edits import check_edit

from .helpers import contract_answer

INSTRUCTION = (
    "从合同中抽取甲方、乙方和金额,以JSON输出。\n\n合同:甲方北京星河科技有限公司,乙方上海云帆贸易有限公司。"
)
ORIGINAL = contract_answer("北京星河科技有限公司", "上海云帆贸易有限公司", "10万元")


def _check(output, *, thinking="核对金额。", original=ORIGINAL, duplicate=False, **filters):
    return check_edit(
        instruction=INSTRUCTION,
        thinking=thinking,
        output=output,
        original_output=original,
        filters=FilterConfig(**filters),
        is_duplicate=lambda _: duplicate,
    )


def test_a_good_edit_passes_stripped():
    edited = contract_answer("北京星河科技有限公司", "上海云帆贸易有限公司", "12万元")
    checked = _check(f"  {edited}\n")
    assert checked.problem is None
    assert checked.output == edited


def test_an_answer_marker_inside_the_edit_is_caught_by_the_parser():
    checked = _check("金额见下文\n【最终答案】" + ORIGINAL, original="text")
    assert checked.problem is not None and "marker" in checked.problem


def test_json_answers_stay_json():
    checked = _check('{"甲方": "北京星河科技有限公司", 乙方: 缺引号}')
    assert checked.problem is not None and "original answer is JSON" in checked.problem


def test_the_quality_filters_apply():
    assert _check("好的", original="text").filter_reason == "too_short"
    assert _check("{}").filter_reason == "too_short"
    refusal = _check(
        "很抱歉,我无法回答这个问题,因为合同内容不完整,请提供更多信息以便继续处理。", original="text"
    )
    assert refusal.filter_reason == "refusal"
    assert _check("", original="text").problem == "the answer is empty"


def test_a_duplicate_of_another_accepted_answer_is_refused_unless_dedupe_is_off():
    edited = contract_answer("北京星河科技有限公司", "上海云帆贸易有限公司", "12万元")
    assert _check(edited, duplicate=True).filter_reason == "duplicate"
    assert _check(edited, duplicate=True, dedupe=False).problem is None
