"""Money from tokens, across resumes, and the budget line."""

from __future__ import annotations

import pytest
from distill.engine.cost import CostMeter

from distill.endpoint import Price


def test_spend_counts_prior_runs_at_todays_prices():
    meter = CostMeter(
        Price(input_per_million=2.5, output_per_million=10, currency="USD"),
        budget=1.0,
        prior_prompt_tokens=100_000,
        prior_completion_tokens=20_000,
    )
    assert meter.total_spend == pytest.approx(0.25 + 0.2)
    assert not meter.over_budget
    meter.add(100_000, 30_000)
    assert meter.session_spend == pytest.approx(0.25 + 0.3)
    assert meter.total_spend == pytest.approx(1.0) and meter.over_budget
    summary = meter.as_dict()
    assert summary["currency"] == "USD" and summary["total"] == pytest.approx(1.0)
    assert summary["tokens"]["total"] == {"prompt": 200_000, "completion": 50_000}
    assert summary["tokens"]["session"] == {"prompt": 100_000, "completion": 30_000}


def test_unpriced_model_counts_tokens_only():
    meter = CostMeter(None)
    meter.add(10, 20)
    assert meter.total_spend == 0 and not meter.over_budget
    assert meter.as_dict()["priced"] is False and meter.as_dict()["tokens"]["session"]["completion"] == 20
