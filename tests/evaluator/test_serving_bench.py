"""A sweep of two real HTTP servers with known latencies (a slow-to-start "teacher", a fast-to-start "student"):
every point is measured, the knee and the cost per 1,000 requests follow from the figures, the time budget
stops a sweep, and the table and plots are written."""

from __future__ import annotations

import pytest
from distill.engine.types import ChatRequest
from distill.evaluator.latency import LoadProfile
from distill.evaluator.load_metrics import LatencyTargets
from distill.evaluator.plots import goodput_plot, serving_curve_plot
from distill.evaluator.serving_bench import ServingSide, headline, markdown_table, run_sweep

from distill.endpoint import Endpoint, Price
from distill.testing.fake_teacher import FakeTeacherSettings, start_in_thread

ANSWER = "Acme and Bolt signed for 500000 yuan on 2024-03-05; the breach clause is quoted in full here."


@pytest.fixture(scope="module")
def servers():
    stops = []
    endpoints = {}
    for name, ttft, per_token in (("teacher", 250.0, 4.0), ("student", 20.0, 8.0)):
        settings = FakeTeacherSettings(model=name, latency_ms=ttft, stream_ms_per_token=per_token)
        url, stop = start_in_thread(settings, responder=lambda body: ANSWER)
        stops.append(stop)
        endpoints[name] = Endpoint(base_url=url, model=name, api_key_env=None)
    yield endpoints
    for stop in stops:
        stop()


def _side(endpoints, role, **cost):
    prompts = [
        ChatRequest(messages=[{"role": "user", "content": f"contract {i}"}], model=role) for i in range(3)
    ]
    return ServingSide(role, f"the {role}", endpoints[role], prompts, **cost)


def test_both_sides_swept_with_costs_and_knee(servers, tmp_path):
    load = LoadProfile(concurrency=[1, 4], requests=4, warmup=1)
    targets = LatencyTargets(ttft_ms=150)  # the student meets it, the teacher (250 ms) never does
    teacher = run_sweep(
        _side(servers, "teacher", price=Price(input_per_million=2.5, output_per_million=10.0)),
        load,
        targets,
        say=lambda m: None,
    )
    student = run_sweep(_side(servers, "student", cost_per_hour=3.6), load, targets, say=lambda m: None)
    for result in (teacher, student):
        assert [p["load"]["value"] for p in result["points"]] == [1, 4] and not result["skipped"]
        assert all(p["completed"] == 4 for p in result["points"])
    assert student["knee"] == 1 and teacher["knee"] is None
    assert headline(student) is student["points"][1] and headline(teacher) is teacher["points"][0]
    # Teacher: tokens × price. Student: machine price per hour over the requests per second measured there.
    point = teacher["points"][0]
    expected = 1000 * (point["prompt_tokens_mean"] * 2.5 + point["output_tokens_mean"] * 10.0) / 1e6
    assert point["cost_per_1k_requests"] == pytest.approx(expected)
    for point in student["points"]:
        assert point["cost_per_1k_requests"] == pytest.approx(
            1000 * 3.6 / (point["request_throughput"] * 3600)
        )
    # More in flight, more throughput (the fake server does not saturate at 4).
    assert student["points"][1]["request_throughput"] > 2 * student["points"][0]["request_throughput"]
    table = markdown_table([student, teacher])
    assert "concurrency 4 ★" in table and table.count("\n| teacher |") == 2
    assert serving_curve_plot([student, teacher], tmp_path / "curve.png").stat().st_size > 1000
    assert (
        goodput_plot([student, teacher], targets.describe(), tmp_path / "goodput.png").stat().st_size > 1000
    )


def test_the_time_budget_stops_a_sweep(servers):
    messages = []
    result = run_sweep(
        _side(servers, "teacher"),
        LoadProfile(concurrency=[1, 2, 4], requests=2, warmup=0),
        LatencyTargets(),
        budget_s=0.1,
        say=messages.append,
    )
    assert len(result["points"]) == 1 and result["skipped"] == ["concurrency 2", "concurrency 4"]
    assert "time budget" in messages[-1]
    assert (
        result["points"][0]["cost_per_1k_requests"] is None
        and result["points"][0]["cost_basis"] == "no price given"
    )
