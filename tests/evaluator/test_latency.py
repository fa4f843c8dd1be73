"""Load points against the engine's fake teacher with a known latency (200 ms to the first token, then 10 ms per
token), over real HTTP: the measured TTFT, TPOT, ITL and end-to-end figures land within a tolerance of that; a
Poisson rate point is an open loop (it does not wait for answers); a duration point stops sending on time;
failures are counted, not retried."""

from __future__ import annotations

import asyncio
import random
import statistics
import time

import pytest
from distill.engine.types import ChatRequest
from distill.evaluator.latency import (
    LoadPoint,
    LoadProfile,
    _poisson_arrivals,
    measure_point,
    measuring_session,
    warm_up,
)
from distill.evaluator.load_metrics import LatencyTargets, summarise_point

from distill.endpoint import Endpoint
from distill.testing.fake_teacher import FakeTeacherSettings, start_in_thread
from distill.testing.fake_teacher_answers import count_tokens, split_stream_pieces

TTFT_MS, PER_TOKEN_MS = 200.0, 10.0
ANSWER = (
    "The parties are Acme and Bolt; the amount is 500000 yuan, signed on 2024-03-05, breach clause quoted."
)
TOKENS = count_tokens(ANSWER)


@pytest.fixture(scope="module")
def fake_api():
    settings = FakeTeacherSettings(model="fake-teacher", latency_ms=TTFT_MS, stream_ms_per_token=PER_TOKEN_MS)
    base_url, stop = start_in_thread(settings, responder=lambda body: ANSWER)
    yield Endpoint(base_url=base_url, model="fake-teacher", api_key_env=None)
    stop()


def _requests(count: int, **extra) -> list[ChatRequest]:
    return [
        ChatRequest(
            messages=[{"role": "user", "content": f"q{i}"}], model="fake-teacher", max_tokens=256, **extra
        )
        for i in range(count)
    ]


def _measure(endpoint, requests, point, *, max_in_flight=64, warmup=0, **kwargs):
    async def run():
        async with measuring_session(endpoint, max_in_flight) as session:
            await warm_up(session, requests, warmup)
            return await measure_point(session, requests, point, **kwargs)

    return asyncio.run(run())


def test_known_latency_is_measured(fake_api):
    result = _measure(fake_api, _requests(8), LoadPoint(kind="concurrency", value=4), count=8, warmup=1)
    summary = summarise_point(result, LatencyTargets())
    assert summary["completed"] == 8 and summary["failed"] == 0
    expected_e2e = TTFT_MS + PER_TOKEN_MS * (TOKENS - 1)
    # Loose upper bounds: other work shares this 2-core machine; lower bounds are physics (sleeps).
    assert TTFT_MS * 0.95 <= summary["ttft_ms"]["p50"] <= TTFT_MS + 150
    assert PER_TOKEN_MS * 0.9 <= summary["tpot_ms"]["p50"] <= PER_TOKEN_MS * 2.5
    gap = PER_TOKEN_MS * (TOKENS - 1) / (len(split_stream_pieces(ANSWER)) - 1)  # the server's chunk spacing
    assert gap * 0.9 <= summary["itl_ms"]["p50"] <= gap * 2.5 + 5
    assert expected_e2e * 0.95 <= summary["e2el_ms"]["p50"] <= expected_e2e * 1.5 + 100
    for metric in ("ttft_ms", "tpot_ms", "itl_ms", "e2el_ms"):
        d = summary[metric]
        assert d["p50"] <= d["p90"] <= d["p95"] <= d["p99"] and d["std"] >= 0
    assert summary["output_tokens_mean"] == TOKENS and summary["prompt_tokens_mean"] > 0
    # 8 requests, 4 at a time, each ~expected_e2e long: two waves.
    wall_expected = 2 * expected_e2e / 1000.0
    assert wall_expected * 0.95 <= summary["wall_s"] <= wall_expected * 1.6 + 0.3
    assert summary["request_throughput"] == pytest.approx(8 / summary["wall_s"])
    assert summary["output_token_throughput"] == pytest.approx(8 * TOKENS / summary["wall_s"])
    assert summary["total_token_throughput"] > summary["output_token_throughput"]


def test_goodput_follows_the_targets(fake_api):
    result = _measure(fake_api, _requests(4), LoadPoint(kind="concurrency", value=4), count=4)
    loose = summarise_point(result, LatencyTargets(ttft_ms=5000, tpot_ms=500))
    tight = summarise_point(result, LatencyTargets(ttft_ms=50))  # below the server's 200 ms: nothing meets it
    assert loose["good"] == 4 and loose["goodput"] == pytest.approx(loose["request_throughput"])
    assert tight["good"] == 0 and tight["goodput"] == 0 and tight["attainment"] == 0


def test_a_rate_point_is_an_open_loop(fake_api):
    # 10 requests at 20/s: sent over ~0.5 s whatever the answers do; each takes ~1 s, so they overlap.
    # A closed loop of one request at a time would need ~10 s.
    started = time.perf_counter()
    result = _measure(fake_api, _requests(10), LoadPoint(kind="rate", value=20), count=10)
    wall = time.perf_counter() - started
    summary = summarise_point(result, LatencyTargets())
    e2e_s = (TTFT_MS + PER_TOKEN_MS * (TOKENS - 1)) / 1000.0
    assert summary["completed"] == 10
    assert e2e_s <= wall < e2e_s + 1.6
    assert summary["ttft_ms"]["p99"] < TTFT_MS + 300  # nobody queued behind another request


def test_poisson_arrivals_have_the_asked_rate_and_are_seeded():
    async def arrival_times(seed):
        started = time.perf_counter()
        times = []
        async for _ in _poisson_arrivals(lambda i: _requests(1)[0], 400.0, 200, None, seed):
            times.append(time.perf_counter() - started)
        return times

    times = asyncio.run(arrival_times(7))
    assert len(times) == 200
    assert 0.8 * 199 / 400 <= times[-1] <= 199 / 400 * 1.25 + 0.15  # mean gap 1/rate
    # The schedule itself is exponential and reproducible: same seed, same gaps.
    rng = random.Random(7)
    gaps = [rng.expovariate(400.0) for _ in range(2000)]
    assert statistics.mean(gaps) == pytest.approx(1 / 400, rel=0.1)
    assert statistics.stdev(gaps) == pytest.approx(1 / 400, rel=0.15)  # exponential: std = mean


def test_a_duration_point_stops_sending_on_time(fake_api):
    result = _measure(fake_api, _requests(3), LoadPoint(kind="concurrency", value=2), duration_s=1.0)
    e2e_s = (TTFT_MS + PER_TOKEN_MS * (TOKENS - 1)) / 1000.0
    assert 2 <= len(result.timings) <= 2 * (1.0 / e2e_s + 1) + 2
    assert 1.0 <= result.wall_s <= 1.0 + e2e_s + 0.6


def test_failures_are_counted_not_retried(fake_api):
    requests = _requests(1, extra_body={"fake_fault": {"kind": "500"}})
    result = _measure(fake_api, requests, LoadPoint(kind="concurrency", value=1), count=2)
    summary = summarise_point(result, LatencyTargets())
    assert summary["completed"] == 0 and summary["failed"] == 2 and summary["failures"] == {"server_error": 2}
    assert summary["goodput"] == 0 and summary["ttft_ms"]["p50"] is None


def test_profiles_are_validated():
    assert [p.label for p in LoadProfile(concurrency=[8, 1, 8]).points()] == [
        "concurrency 1",
        "concurrency 8",
    ]
    assert [p.label for p in LoadProfile(profile="rate", rates=[2, 0.5]).points()] == ["0.5 req/s", "2 req/s"]
    waves = LoadProfile(concurrency=[1, 8], requests=4, waves=1.5)
    assert [waves.requests_at(p) for p in waves.points()] == [4, 12]  # at least 1.5 waves of 8 in flight
    assert (
        LoadProfile(requests=None, duration_s=3).requests_at(LoadPoint(kind="concurrency", value=2)) is None
    )
    with pytest.raises(ValueError, match="exactly one"):
        LoadProfile(requests=None)
    with pytest.raises(ValueError, match="exactly one"):
        LoadProfile(requests=8, duration_s=5)
    with pytest.raises(ValueError, match="at least 1"):
        LoadProfile(concurrency=[0, 2])
    with pytest.raises(ValueError, match="above 0"):
        LoadProfile(profile="rate", rates=[0])
