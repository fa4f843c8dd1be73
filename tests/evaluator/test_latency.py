"""The streaming load test against the engine's fake teacher with a known latency: 200 ms to the first token,
then 10 ms per token. The measured TTFT, TPOT and end-to-end figures must land within a tolerance of that."""

from __future__ import annotations

import pytest
from distill.engine.types import ChatRequest
from distill.evaluator.latency import percentile, run_load_test

from distill.endpoint import Endpoint
from distill.testing.fake_teacher import FakeTeacherSettings, start_in_thread
from distill.testing.fake_teacher_answers import count_tokens

TTFT_MS, PER_TOKEN_MS = 200.0, 10.0
ANSWER = (
    "The parties are Acme and Bolt; the amount is 500000 yuan, signed on 2024-03-05, breach clause quoted."
)


@pytest.fixture(scope="module")
def fake_api():
    settings = FakeTeacherSettings(model="fake-teacher", latency_ms=TTFT_MS, stream_ms_per_token=PER_TOKEN_MS)
    base_url, stop = start_in_thread(settings, responder=lambda body: ANSWER)
    yield base_url
    stop()


def endpoint(base_url: str) -> Endpoint:
    return Endpoint(base_url=base_url, model="fake-teacher", api_key_env=None)


def test_percentiles_interpolate_like_numpy():
    values = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert percentile(values, 50) == 3.0
    assert percentile(values, 95) == pytest.approx(4.8)
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None


def test_known_latency_is_measured(fake_api):
    tokens = count_tokens(ANSWER)
    requests = [
        ChatRequest(messages=[{"role": "user", "content": f"q{i}"}], model="fake-teacher", max_tokens=256)
        for i in range(8)
    ]
    result = run_load_test(endpoint(fake_api), requests, concurrency=4, warmup=1)
    assert result["succeeded"] == 8 and result["failed"] == {}
    expected_e2e = TTFT_MS + PER_TOKEN_MS * (tokens - 1)
    # Loose upper bounds: other work shares this 2-core machine; lower bounds are physics (sleeps).
    assert TTFT_MS * 0.95 <= result["ttft_ms"]["p50"] <= TTFT_MS + 150
    assert PER_TOKEN_MS * 0.9 <= result["tpot_ms"]["p50"] <= PER_TOKEN_MS * 2.5
    assert expected_e2e * 0.95 <= result["e2e_ms"]["p50"] <= expected_e2e * 1.5 + 100
    assert result["e2e_ms"]["p50"] <= result["e2e_ms"]["p95"] <= result["e2e_ms"]["p99"]
    assert result["output_tokens_mean"] == tokens
    # 8 requests, 4 at a time, each ~expected_e2e long: two waves.
    wall_expected = 2 * expected_e2e / 1000.0
    assert result["requests_per_s"] == pytest.approx(8 / result["wall_s"])
    assert wall_expected * 0.95 <= result["wall_s"] <= wall_expected * 1.6 + 0.3
    assert result["output_tokens_per_s"] == pytest.approx(8 * tokens / result["wall_s"])
    assert len(result["samples"]["e2e_ms"]) == 8


def test_failures_are_counted_not_retried(fake_api):
    requests = [
        ChatRequest(
            messages=[{"role": "user", "content": "x"}],
            model="fake-teacher",
            extra_body={"fake_fault": {"kind": "500"}},
        )
    ]
    result = run_load_test(endpoint(fake_api), requests, concurrency=1, warmup=0)
    assert result["succeeded"] == 0 and result["failed"] == {"server_error": 1}
