"""The per-point figures are vLLM's definitions: percentiles and std as numpy computes them, TPOT as
(E2EL − TTFT) / (tokens − 1), goodput over every target, the knee as the highest load meeting the attainment asked for."""

from __future__ import annotations

import numpy as np
import pytest
from distill.evaluator.load_metrics import (
    LatencyTargets,
    PointResult,
    RequestTiming,
    distribution,
    knee,
    percentile,
    summarise_point,
)


def test_percentiles_and_std_match_numpy():
    rng = np.random.default_rng(3)
    values = list(rng.lognormal(5, 1, 101))
    for q in (50, 90, 95, 99):
        assert percentile(values, q) == pytest.approx(np.percentile(values, q))
    d = distribution(values)
    assert d["mean"] == pytest.approx(np.mean(values)) and d["std"] == pytest.approx(np.std(values))
    assert percentile([7.0], 99) == 7.0 and percentile([], 50) is None
    assert distribution([])["p99"] is None


def _timing(ttft, itl, tokens, e2el=None, prompt=10):
    return RequestTiming(
        ok=True,
        e2el_ms=e2el or ttft + sum(itl),
        ttft_ms=ttft,
        itl_ms=tuple(itl),
        prompt_tokens=prompt,
        output_tokens=tokens,
    )


def test_tpot_is_the_time_after_the_first_token_over_the_tokens_after_it():
    # 5 tokens in 3 chunks: (30 + 50) ms after the first token, over 4 tokens.
    assert _timing(100, [30, 50], 5).tpot_ms == pytest.approx(20.0)
    assert _timing(100, [], 1).tpot_ms is None
    # The last two tokens streamed no text (say, special tokens under ignore_eos): the stream ended 40 ms after
    # the last text chunk, and those 40 ms are TPOT's too, as in vLLM's (E2EL − TTFT) / (tokens − 1).
    assert _timing(100, [30, 50], 5, e2el=220).tpot_ms == pytest.approx(30.0)


def test_a_point_counts_throughput_goodput_and_failures():
    timings = [
        _timing(100, [10, 10], 3),  # good
        _timing(300, [10, 10], 3),  # TTFT too slow
        _timing(100, [90, 90], 3),  # TPOT 90 too slow
        _timing(100, [], 1),  # one token: TPOT counts as 0, as in vLLM
        RequestTiming(ok=False, e2el_ms=0.0, error_class="timeout"),
    ]
    targets = LatencyTargets(ttft_ms=200, tpot_ms=50)
    summary = summarise_point(PointResult(timings, wall_s=2.0), targets)
    assert summary["requests"] == 5 and summary["completed"] == 4 and summary["failures"] == {"timeout": 1}
    assert summary["request_throughput"] == 2.0
    assert summary["output_token_throughput"] == (3 + 3 + 3 + 1) / 2
    assert summary["total_token_throughput"] == (10 + 40) / 2
    assert summary["good"] == 2 and summary["goodput"] == 1.0 and summary["attainment"] == pytest.approx(0.4)
    assert summary["itl_ms"]["p50"] == 10 and len([t for t in timings if t.ok and t.itl_ms]) == 3
    assert targets.describe() == "TTFT ≤ 200 ms, TPOT ≤ 50 ms"


def test_the_knee_is_the_highest_load_meeting_the_attainment():
    targets = LatencyTargets(ttft_ms=100, attainment=0.9)
    points = [{"attainment": a, "completed": 10} for a in (1.0, 0.95, 0.5, 0.92, 0.1)]
    assert knee(points, targets) == 3  # highest load at or above 90%, even after a dip
    assert knee([{"attainment": 0.2, "completed": 10}], targets) is None
    assert knee([{"attainment": None, "completed": 0}], targets) is None


def test_targets_are_validated():
    with pytest.raises(ValueError):
        LatencyTargets(ttft_ms=0)
    with pytest.raises(ValueError):
        LatencyTargets(attainment=1.5)
    assert LatencyTargets().describe() == "none"
