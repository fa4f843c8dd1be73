"""Where each side's cost per call comes from: given, prices × measured tokens, or hourly cost / measured req/s."""

from __future__ import annotations

import pytest
from distill.evaluator.config import EvalConfig
from distill.evaluator.report import investment_arithmetic
from distill.evaluator.roi_inputs import investment, roi_for_student, student_cost, teacher_cost

BASE = {"eval_set": "e.jsonl", "output_dir": "o", "students": [{"name": "s"}]}
TEACHER = {"base_url": "http://127.0.0.1:1/v1", "model": "m"}
SYSTEMS = {
    "teacher": {"tokens": {"prompt_mean": 1000.0, "completion_mean": 200.0}},
    "s": {"tokens": {"prompt_mean": 1000.0, "completion_mean": 100.0}},
}
PRICE = {"input_per_million": 2.5, "output_per_million": 10.0}


def config(**changes) -> EvalConfig:
    return EvalConfig.model_validate({**BASE, **changes})


def test_the_seeds_figures_are_the_default():
    c = config(teacher=TEACHER)
    assert teacher_cost(c, SYSTEMS) == (0.02, "roi.teacher_cost_per_call")
    assert student_cost(c, "s", SYSTEMS, {})[0] == 0.001


def test_a_price_is_used_unless_a_cost_per_call_is_written():
    priced = config(teacher={**TEACHER, "price": PRICE})
    cost, source = teacher_cost(priced, SYSTEMS)
    assert cost == pytest.approx((1000 * 2.5 + 200 * 10.0) / 1e6) and "measured tokens" in source
    written = config(teacher={**TEACHER, "price": PRICE}, roi={"teacher_cost_per_call": 0.05})
    assert teacher_cost(written, SYSTEMS) == (0.05, "roi.teacher_cost_per_call")
    unknown = config(teacher=TEACHER, roi={"teacher_cost_per_call": None})
    assert teacher_cost(unknown, SYSTEMS)[0] is None


def test_student_cost_from_price_or_from_an_hourly_server_and_measured_throughput():
    priced = config(roi={"student_price": {"input_per_million": 0.1, "output_per_million": 0.2}})
    assert student_cost(priced, "s", SYSTEMS, {})[0] == pytest.approx((1000 * 0.1 + 100 * 0.2) / 1e6)
    hourly = config(roi={"student_cost_per_hour": 7.2})
    # The sweep's knee (concurrency 4 here) is the throughput the server is priced at.
    points = [{"load": {"kind": "concurrency", "value": c}, "request_throughput": c * 1.0} for c in (1, 4, 8)]
    cost, source = student_cost(hourly, "s", SYSTEMS, {"s": {"points": points, "knee": 1}})
    assert (
        cost == pytest.approx(7.2 / (4.0 * 3600)) and "measured req/s at the knee (concurrency 4)" in source
    )
    assert student_cost(hourly, "s", SYSTEMS, {})[0] is None  # no latency measurement: unknown, not guessed


def test_investment_is_the_data_bought_plus_training_and_engineering():
    counted = config(teacher=TEACHER, roi={"data_calls": 160, "training_cost": 50, "engineering_cost": 2000})
    parts = investment(counted, 0.02)
    assert parts["data"] == pytest.approx(3.2) and parts["total"] == pytest.approx(2053.2)
    assert "160 teacher answers × 0.02 per call" in parts["data_source"]
    measured = config(teacher=TEACHER, roi={"data_calls": 160, "data_cost": 1.5})
    assert investment(measured, 0.02)["total"] == 1.5  # the engine's measured spend wins over the estimate
    assert investment(config(teacher=TEACHER, roi={"data_calls": 160}), None)["total"] is None


def test_break_even_follows_the_investment_and_decides_the_verdict():
    systems = {"teacher": {"tokens": {}, "task": {"f1": 1.0}}, "s": {"tokens": {}, "task": {"f1": 0.95}}}
    cheap = config(teacher=TEACHER, roi={"data_calls": 1000, "retention_from": "f1"})
    dear = config(
        teacher=TEACHER, roi={"data_calls": 1000, "engineering_cost": 60_000, "retention_from": "f1"}
    )
    quick = roi_for_student(cheap, "s", systems, {}, {}, [])["roi"]
    slow = roi_for_student(dear, "s", systems, {}, {}, [])["roi"]
    assert quick["investment"] == pytest.approx(20.0) and quick["recommended"]
    # 60,020 / 19,000 saved per month = 3.16 months: over the 3-month rule, so not recommended.
    assert slow["break_even_months"] == pytest.approx(60_020 / 19_000) and not slow["recommended"]
    assert any("break-even" in reason for reason in slow["reasons"])
    assert investment_arithmetic(slow) == (
        "Investment = data 20.00 (1000 teacher answers × 0.02 per call) + training 0.00 + engineering 60,000.00 "
        "= 60,020.00 CNY; break-even = 60,020.00 / 19,000.00 saved per month = 3.16 months"
    )


def test_a_text_task_has_no_f1_retention_and_still_gets_a_verdict():
    systems = {
        "teacher": {"tokens": {}, "task": {"exact_match": 0.5}},
        "s": {"tokens": {}, "task": {"exact_match": 0.25}},
    }
    result = roi_for_student(config(teacher=TEACHER), "s", systems, {}, {}, [])
    assert "f1_retention" not in result and result["roi"]["retention"] is None
    assert not result["roi"]["recommended"]  # no judge, no fields: retention unknown, said so
