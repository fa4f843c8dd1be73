"""Field P/R/F1 and format compliance on hand-checked cases (the contract task's five fields)."""

from __future__ import annotations

import json

import pytest
from distill.evaluator.metrics import FieldScorer, normalise, parse_answer_object, required_fields, summarise

FIELDS = ["甲方", "乙方", "金额", "签订日期", "违约条款"]
REFERENCE = {
    "甲方": "北京星辰科技有限公司",
    "乙方": "上海海岳贸易有限公司",
    "金额": 500000,
    "签订日期": "2024-03-05",
    "违约条款": "逾期付款的,每日按未付金额的千分之一支付违约金。",
}
NORMALISERS = ["nfkc", "casefold", "whitespace", "strip_punct"]
PER_FIELD = {"金额": ["nfkc", "number"], "签订日期": ["nfkc", "date"]}


def scorer() -> FieldScorer:
    return FieldScorer(FIELDS, NORMALISERS, PER_FIELD)


def as_json(value: dict) -> str:
    return json.dumps(value, ensure_ascii=False)


def test_exact_answer_in_a_fence_after_prose_is_all_true_positives():
    text = "【思考】先找甲方……\n\n【答案】好的,结果如下:\n```json\n" + as_json(REFERENCE) + "\n```\n以上。"
    result = scorer().compare(REFERENCE, text)
    assert result.parsed and result.compliant
    assert sum(c.tp for c in result.per_field.values()) == 5
    assert result.wrong == []


def test_full_width_punctuation_spaces_case_and_formats_are_normalised():
    answer = {
        "甲方": " 北京星辰科技有限公司 ",
        "乙方": "上海海岳贸易有限公司。",
        "金额": "500,000元",
        "签订日期": "2024年3月5日",
        "违约条款": "逾期付款的，每日按未付金额的千分之一支付违约金。",  # full-width comma
    }
    result = scorer().compare(REFERENCE, as_json(answer))
    assert result.wrong == []
    assert normalise("ＡＢＣ Ltd", NORMALISERS) == normalise("abc  ltd", NORMALISERS)
    assert normalise("¥1,234.50", ["number"]) == "1234.5"
    assert normalise("2024/3/5", ["date"]) == "2024-03-05"


def test_wrong_value_is_fp_and_fn_missing_is_fn_extra_keys_ignored():
    answer = dict(REFERENCE, 金额=600000)  # wrong
    del answer["违约条款"]  # missing: not compliant
    answer["备注"] = "extra key, not a required field"
    result = scorer().compare(REFERENCE, as_json(answer))
    assert result.parsed and not result.compliant
    assert (result.per_field["金额"].tp, result.per_field["金额"].fp, result.per_field["金额"].fn) == (
        0,
        1,
        1,
    )
    assert (result.per_field["违约条款"].fp, result.per_field["违约条款"].fn) == (0, 1)
    assert sorted(result.wrong) == ["违约条款", "金额"]
    summary = summarise([result], FIELDS)
    # TP 3, FP 1, FN 2 → P 3/4, R 3/5, F1 2·3/(6+1+2) = 2/3.
    assert (summary["tp"], summary["fp"], summary["fn"]) == (3, 1, 2)
    assert summary["precision"] == pytest.approx(0.75)
    assert summary["recall"] == pytest.approx(0.6)
    assert summary["f1"] == pytest.approx(2 / 3)
    assert summary["format_compliance"] == 0.0


def test_micro_average_over_items_and_no_answer_counts_as_missed():
    good = scorer().compare(REFERENCE, as_json(REFERENCE))
    garbage = scorer().compare(REFERENCE, "I cannot find any JSON here, sorry.")
    nothing = scorer().compare(REFERENCE, None)
    assert not garbage.parsed and not garbage.compliant and garbage.answered
    assert not nothing.answered
    summary = summarise([good, garbage, nothing], FIELDS)
    # 5 TP, 0 FP, 10 FN → P 1.0, R 1/3, F1 = 10/20.
    assert summary["precision"] == 1.0
    assert summary["recall"] == pytest.approx(1 / 3)
    assert summary["f1"] == pytest.approx(0.5)
    assert summary["format_compliance"] == pytest.approx(1 / 3)
    assert summary["no_answer"] == 1
    assert summary["per_field_f1"]["甲方"] == pytest.approx(0.5)


def test_nothing_predicted_gives_f1_zero_not_undefined():
    summary = summarise([scorer().compare(REFERENCE, "no json")], FIELDS)
    assert summary["precision"] is None and summary["recall"] == 0.0 and summary["f1"] == 0.0


def test_parse_prefers_the_object_holding_the_required_fields():
    text = (
        'Example: {"a": 1}. Answer: {"甲方": "x", "乙方": "y", "金额": 1, "签订日期": "d", "违约条款": "z"}'
    )
    assert parse_answer_object(text, FIELDS)["甲方"] == "x"
    assert parse_answer_object("{not json", FIELDS) is None


def test_required_fields_from_config_or_references():
    assert required_fields([{"b": 1, "a": 2}, {"c": 3}], None) == ["b", "a", "c"]
    assert required_fields([{"b": 1}], ["x"]) == ["x"]


SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "salary": {"type": "integer"},
        "start": {"type": "string", "format": "date"},
        "remote": {"type": "boolean"},
    },
    "required": ["title", "salary", "start", "remote"],
    "additionalProperties": False,
}
JOB = {"title": "Data Engineer", "salary": 90000, "start": "2025-03-05", "remote": True}


def _schema_scorer() -> FieldScorer:
    from distill.evaluator.answer_schema import check_schema

    schema = check_schema(SCHEMA, "schema")
    return FieldScorer(schema.fields, NORMALISERS, None, schema)


def test_with_a_schema_compliance_is_valid_json_that_satisfies_it():
    scorer = _schema_scorer()
    exact = json.dumps(JOB)
    fenced = "[Thinking]\nread it\n\n[Final Answer]\n```json\n" + exact + "\n```"
    assert scorer.compare(JOB, exact).compliant and scorer.compare(JOB, fenced).compliant
    in_prose = "Here it is: " + exact  # the fields still count, but it is not a compliant answer
    assert (
        not scorer.compare(JOB, in_prose).compliant
        and scorer.compare(JOB, in_prose).per_field["title"].tp == 1
    )
    wrong_type = json.dumps({**JOB, "salary": "90k"})
    assert not scorer.compare(JOB, wrong_type).compliant
    bad_date = json.dumps({**JOB, "start": "next March"})
    assert not scorer.compare(JOB, bad_date).compliant  # formats are checked too
    extra_key = json.dumps({**JOB, "note": "x"})
    assert not scorer.compare(JOB, extra_key).compliant


def test_with_a_schema_each_field_is_normalised_by_its_type():
    scorer = _schema_scorer()
    # Width, case and spacing of a string; 90,000 for 90000; a date written out in English; all still right.
    answer = json.dumps(
        {"title": "ＤＡＴＡ  engineer", "salary": "90,000", "start": "March 5, 2025", "remote": True}
    )
    result = scorer.compare(JOB, answer)
    assert result.wrong == [] and not result.compliant  # right values, but salary is a string: not compliant
    assert summarise([result], scorer.fields)["f1"] == 1.0


def test_text_answers_are_scored_by_exact_match_after_normalisation():
    from distill.evaluator.metrics import exact_match, summarise_exact

    reference = "Ana reports that the login page crashes on opening and asks for a fix."
    assert exact_match(
        reference,
        "[Thinking]\nx\n\n[Final Answer]\n  ana reports that the login page crashes on opening and asks for a fix ",
    )
    assert not exact_match(reference, "Ana reports a crash.")
    assert not exact_match(reference, None)
    summary = summarise_exact([True, False, False, False], answered=3)
    assert summary["exact_match"] == 0.25 and summary["no_answer"] == 1


@pytest.mark.parametrize(
    "written",
    ["2024-03-05", "2024年3月5日", "March 5, 2024", "5 March 2024", "Mar 5 2024", "5th of March, 2024"],
)
def test_dates_in_any_common_writing_compare_equal(written):
    assert normalise(written, ["nfkc", "date"]) == "2024-03-05"
