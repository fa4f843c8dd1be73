"""ROI arithmetic on the seed's own example, win/tie/loss with the 0.1 margin, and the verdict thresholds."""

from __future__ import annotations

import pytest
from distill.evaluator.roi import (
    NOT_RECOMMENDED,
    RECOMMEND,
    compare_scores,
    cost_per_call_from_hourly,
    cost_per_call_from_price,
    verdict,
)


def test_seed_example_one_million_calls_at_two_fen_vs_one_tenth_fen():
    result = verdict(
        calls_per_month=1_000_000,
        teacher_cost_per_call=0.02,
        student_cost_per_call=0.001,
        investment=38_000,
        retention=0.947,  # the seed's 0.89 / 0.94
    )
    assert result["teacher_monthly_cost"] == pytest.approx(20_000)
    assert result["student_monthly_cost"] == pytest.approx(1_000)
    assert result["monthly_saving"] == pytest.approx(19_000)
    assert result["break_even_months"] == pytest.approx(2.0)
    assert result["recommended"] and result["recommendation"] == RECOMMEND
    assert result["reasons"] == []


def test_thresholds_are_strict_and_configurable():
    base = dict(calls_per_month=1_000_000, teacher_cost_per_call=0.02, student_cost_per_call=0.001)
    at_threshold = verdict(**base, investment=57_000, retention=0.95)  # exactly 3 months: not < 3
    assert not at_threshold["recommended"] and at_threshold["recommendation"] == NOT_RECOMMENDED
    assert "break-even 3.00 months" in at_threshold["reasons"][0]
    low_quality = verdict(**base, investment=0, retention=0.90)  # not > 0.90
    assert not low_quality["recommended"]
    relaxed = verdict(**base, investment=57_000, retention=0.85, min_retention=0.8, max_break_even_months=4)
    assert relaxed["recommended"]


def test_no_saving_never_breaks_even_and_unknown_costs_are_reported():
    dearer = verdict(
        calls_per_month=10,
        teacher_cost_per_call=0.001,
        student_cost_per_call=0.002,
        investment=1,
        retention=1.0,
    )
    assert dearer["never_breaks_even"] and dearer["break_even_months"] is None and not dearer["recommended"]
    unknown = verdict(
        calls_per_month=10,
        teacher_cost_per_call=None,
        student_cost_per_call=0.001,
        investment=0,
        retention=1.0,
    )
    assert unknown["monthly_saving"] is None and not unknown["recommended"]
    assert "cost per call unknown" in unknown["reasons"][0]


def test_win_tie_loss_with_the_seeds_margin_and_missing_scores_left_out():
    teacher = [8.0, 8.0, 8.0, 8.0, None, 9.0]
    student = [8.05, 8.2, 7.85, 7.95, 6.0, None]
    result = compare_scores(teacher, student, margin=0.1)
    # 8.05 vs 8 tie (within 0.1); 8.2 win; 7.85 loss; 7.95 tie; the last two are unpaired.
    assert (result["student_wins"], result["ties"], result["teacher_wins"]) == (1, 2, 1)
    assert result["paired"] == 4 and result["unpaired"] == 2
    assert result["tie_rate"] == pytest.approx(0.5)
    assert result["avg_teacher"] == pytest.approx(8.0)
    assert result["avg_student"] == pytest.approx((8.05 + 8.2 + 7.85 + 7.95) / 4)
    assert result["retention"] == pytest.approx(result["avg_student"] / 8.0)


def test_costs_derived_from_prices_and_hourly_rates():
    # 1,000 prompt + 200 completion tokens at 2.5 / 10 per million = 0.0025 + 0.002.
    assert cost_per_call_from_price(2.5, 10.0, 1000, 200) == pytest.approx(0.0045)
    # A 3.6-per-hour server answering 2 req/s: 3.6 / 7200 per call.
    assert cost_per_call_from_hourly(3.6, 2.0) == pytest.approx(0.0005)
    assert cost_per_call_from_hourly(3.6, None) is None
