"""`distill bench serve` end to end on running OpenAI-compatible URLs (real HTTP servers with known latency): the
same messages reach both sides, every point is written to JSON and Markdown, the plots are drawn, and the bench's
own work is a small share of the wall time."""

from __future__ import annotations

import json

import pytest
from distill.engine.prompts import build_instruction
from distill.engine.types import ChatRequest

from distill.bench.serve import ServeBenchConfig, run_bench
from distill.bench.serve_vllm import interleaving, pooled_vllm, vllm_shaped
from distill.errors import UserError
from distill.testing.fake_teacher import FakeTeacherSettings, start_in_thread
from distill.testing.fake_teacher_answers import prompt_text

TASK = "Extract the parties as JSON."
ANSWER = '【思考】the parties are named in the first line.【答案】{"a": "Acme", "b": "Bolt"}'


@pytest.fixture(scope="module")
def servers():
    seen: dict[str, list[str]] = {"student": [], "teacher": []}
    stops, urls = [], {}
    for name, ttft, per_token in (("student", 30.0, 6.0), ("teacher", 300.0, 3.0)):

        def answer(body, name=name):
            seen[name].append(prompt_text(body))
            return ANSWER

        url, stop = start_in_thread(
            FakeTeacherSettings(model=name, latency_ms=ttft, stream_ms_per_token=per_token), answer
        )
        stops.append(stop)
        urls[name] = url
    yield urls, seen
    for stop in stops:
        stop()


def _eval_set(tmp_path, rows=5):
    path = tmp_path / "eval.jsonl"
    path.write_text(
        "".join(
            json.dumps({"id": f"c{i}", "input": f"Contract {i}: Acme sells to Bolt.", "reference": "{}"})
            + "\n"
            for i in range(rows)
        ),
        encoding="utf-8",
    )
    return path


def test_both_sides_get_the_same_messages_and_every_point_is_written(servers, tmp_path):
    urls, seen = servers
    config = ServeBenchConfig.model_validate(
        {
            "eval_set": str(_eval_set(tmp_path)),
            "task": TASK,
            "prompts": 3,
            "max_tokens": 64,
            "student": {"base_url": urls["student"] + "/v1", "served_model": "student", "cost_per_hour": 2.0},
            "teacher": {
                "base_url": urls["teacher"] + "/v1",
                "model": "teacher",
                "api_key_env": None,
                "price": {"input_per_million": 2.5, "output_per_million": 10.0},
            },
            "load": {"concurrency": [1, 4], "requests": 6, "warmup": 1},
            "targets": {"ttft_ms": 200},
            "output_dir": str(tmp_path / "out"),
        }
    )
    report = run_bench(config, say=lambda message: None)
    instructions = {build_instruction(TASK, f"Contract {i}: Acme sells to Bolt.") for i in range(3)}
    # 1 warm-up + 2 points × 6 requests per side, all with one of the three instructions, verbatim.
    assert len(seen["student"]) == len(seen["teacher"]) == 13
    assert set(seen["student"]) == set(seen["teacher"]) == instructions
    student, teacher = report["sides"]
    assert (
        student["knee"] == 1 and teacher["knee"] is None
    )  # 300 ms to the first token misses the 200 ms target
    assert all(p["completed"] == 6 for p in student["points"] + teacher["points"])
    assert (
        teacher["points"][0]["cost_per_1k_requests"] > 0 and student["points"][1]["cost_per_1k_requests"] > 0
    )
    out = tmp_path / "out"
    written = json.loads((out / "serve-bench.json").read_text("utf-8"))
    assert len(written["sides"][0]["points"]) == 2
    overhead = written["overhead"]
    # The wall time splits into the sweeps and the bench's own work (plots mostly, in a run this short).
    assert overhead["own_s"] + overhead["sweep_wall_s"] == pytest.approx(overhead["wall_s"], abs=0.5)
    assert 0 < overhead["client_cpu_fraction_of_sweeps"] < 1
    markdown = (out / "serve-bench.md").read_text("utf-8")
    assert "| student | concurrency 4 ★ |" in markdown and "| teacher | concurrency 1 |" in markdown
    assert "Bench overhead" in markdown
    assert (out / "latency.png").stat().st_size > 1000 and (out / "goodput.png").stat().st_size > 1000


def test_a_rate_sweep_and_a_duration(servers, tmp_path):
    urls, _ = servers
    config = ServeBenchConfig.model_validate(
        {
            "eval_set": str(_eval_set(tmp_path)),
            "student": {"base_url": urls["student"], "served_model": "student"},
            "load": {"profile": "rate", "rates": [5, 20], "requests": None, "duration_s": 0.6, "warmup": 0},
            "output_dir": str(tmp_path / "out"),
        }
    )
    report = run_bench(config, say=lambda message: None)
    [student] = report["sides"]
    first, second = student["points"]
    assert first["load"] == {"kind": "rate", "value": 5.0} and second["load"]["value"] == 20.0
    assert 1 <= first["requests"] <= 8 and second["requests"] > first["requests"]


def test_settings_that_cannot_work_are_refused(tmp_path):
    with pytest.raises(ValueError, match="exactly one"):
        ServeBenchConfig.model_validate({"output_dir": "x"})
    with pytest.raises(ValueError, match="not both"):
        ServeBenchConfig.model_validate(
            {
                "eval_set": "e.jsonl",
                "teacher": {"base_url": "http://127.0.0.1:1/v1", "model": "t"},
                "reference_teacher": {"truth": "truth.jsonl"},
            }
        )
    config = ServeBenchConfig.model_validate({"eval_set": str(tmp_path / "missing.jsonl")})
    with pytest.raises(UserError, match="not found"):
        run_bench(config, say=lambda message: None)


def test_the_agreement_check_alternates_the_tools_in_whole_waves():
    assert interleaving(16, 1) == ([2] * 7 + [1, 1], [2] * 8)  # D V D V ... V D
    assert interleaving(16, 4) == ([4, 4, 4, 4], [8, 4, 4])  # never a partial wave
    assert interleaving(14, 4) == ([4, 4, 6], [8, 6])  # the rest joins each tool's last slice
    assert interleaving(3, 4) == ([3, 0], [3])  # under one wave: one slice each


def _vllm_run(ttfts, latencies, tokens, errors=None, duration=10.0):
    return {
        "ttfts": ttfts,
        "latencies": latencies,
        "output_lens": tokens,
        "itls": [
            [(lat - ttft) / max(n - 1, 1)] * max(n - 1, 0)
            for ttft, lat, n in zip(ttfts, latencies, tokens, strict=True)
        ],
        "errors": errors or [""] * len(ttfts),
        "duration": duration,
    }


def test_vllms_runs_are_pooled_as_vllm_summarises_one_run():
    first = _vllm_run([0.2, 0.3, 0.0], [1.2, 2.3, 0.0], [11, 21, 0], errors=["", "", "timeout"])
    second = _vllm_run([0.4], [0.9], [6], duration=5.0)
    pooled = pooled_vllm([first, second])
    assert pooled["completed"] == 3  # the failed request is left out, as vLLM leaves it out
    assert pooled["median_ttft_ms"] == pytest.approx(300.0)
    assert pooled["median_tpot_ms"] == pytest.approx(100.0)  # per request: 100, 100, 100 ms
    assert pooled["median_e2el_ms"] == pytest.approx(1200.0)
    assert pooled["request_throughput"] == pytest.approx(3 / 15.0)
    assert pooled_vllm([second])["median_tpot_ms"] == pytest.approx(100.0)


def test_the_agreement_check_words_its_requests_as_vllms_benchmark_does():
    request = ChatRequest(messages=[{"role": "user", "content": "hi"}], model="s", max_tokens=8)
    shaped = vllm_shaped(request)
    assert shaped.messages == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    assert (shaped.model, shaped.max_tokens) == ("s", 8) and request.messages[0]["content"] == "hi"
