"""What a hostile server can do to a run, each class over real HTTP against distill.testing.hostile_server:
the key echoed back (errors, previews, answers, fields), broken usage, redirects, bodies without end, a gzip
bomb, answers longer than max_tokens allows, endless Retry-After, a wrong model name, limits that can never
admit a request, and a budget that in-flight work could overshoot."""

from __future__ import annotations

import asyncio
import json
import resource
import time
import urllib.request
from pathlib import Path

import pytest
from distill.engine.admission import LimitError
from distill.engine.client import OpenAIChatClient
from distill.engine.config import GenerateConfig
from distill.engine.errors import CallError
from distill.engine.retry import RetryPolicy
from distill.engine.runner import run_generation
from distill.engine.session import EndpointSession
from distill.engine.types import ChatRequest, Job

from distill.endpoint import Endpoint
from distill.testing.hostile_server import start_hostile_in_thread

KEY = "sk-hostile-0123456789abcdefghijKLMNOPQRSTuvwxyz"
KEY_ENV = "DISTILL_HOSTILE_TEST_KEY"


@pytest.fixture(scope="module")
def hostile():
    base_url, stop = start_hostile_in_thread()
    yield base_url
    stop()


def stats(base_url: str) -> dict:
    with urllib.request.urlopen(base_url + "/stats", timeout=10) as response:
        return json.loads(response.read())


def endpoint(base_url: str, mode: str, **fields) -> Endpoint:
    return Endpoint(base_url=f"{base_url}/{mode}/v1", model="hostile", api_key_env=KEY_ENV, **fields)


def request(max_tokens: int = 256) -> ChatRequest:
    return ChatRequest(
        [{"role": "user", "content": "合同:甲方A公司,乙方B公司。"}], "hostile", 0.0, max_tokens, "r#0"
    )


def call(target: Endpoint, *, stream: bool = False, max_tokens: int = 256) -> object:
    async def main():
        async with OpenAIChatClient(target, KEY) as client:
            return await client.complete(request(max_tokens), stream=stream)

    return asyncio.run(main())


def key_pieces(text: str) -> list[str]:
    """Every 8-character run of the key found in ``text``."""
    return [KEY[i : i + 8] for i in range(len(KEY) - 7) if KEY[i : i + 8] in text]


def run_dir_text(run_dir: Path) -> str:
    return "\n".join(path.read_text("utf-8", "replace") for path in run_dir.rglob("*") if path.is_file())


def generate(tmp_path: Path, target: Endpoint, rows: int = 6, **settings) -> tuple[dict, GenerateConfig]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    inputs = tmp_path / "in.jsonl"
    inputs.write_text(
        "".join(
            json.dumps({"id": f"c{i}", "input": f"合同{i}:甲方A公司,乙方B公司。"}) + "\n" for i in range(rows)
        )
    )
    config = GenerateConfig(
        input=inputs,
        output_dir=tmp_path / "run",
        teacher=target,
        task="抽取合同要素",
        max_tokens=256,
        **settings,
    )
    return run_generation(config, progress=False), config


# -- the key -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "error_class"), [("echo_key_error", "bad_request"), ("echo_key_html", "server_error")]
)
def test_an_echoed_key_is_scrubbed_before_any_cut(hostile, mode, error_class):
    with pytest.raises(CallError) as caught:
        call(endpoint(hostile, mode))
    assert caught.value.error_class == error_class
    assert "***" in caught.value.message and key_pieces(caught.value.message) == []
    assert key_pieces(repr(caught.value)) == []


def test_no_piece_of_the_key_reaches_the_run_directory(hostile, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    for mode in ("echo_key_error", "echo_key_answer", "echo_key_model"):
        summary, config = generate(tmp_path / mode, endpoint(hostile, mode, retries=0))
        assert summary["status"] == "complete", summary
        text = run_dir_text(config.output_dir) + json.dumps(summary)
        assert key_pieces(text) == [], mode
    # The answer that quoted the key was refused, not written; the one that put it in `model` was scrubbed.
    failed = run_dir_text(tmp_path / "echo_key_answer" / "run")
    assert "key_echoed" in failed and "您的请求头是" not in failed
    model_run = run_dir_text(tmp_path / "echo_key_model" / "run")
    assert '"source_model":"***"' in model_run.replace(" ", "")


# -- usage, redirects, sizes ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["usage_negative", "usage_huge", "usage_text", "usage_fraction"])
def test_usage_that_is_not_token_counts_is_a_named_error(hostile, mode):
    with pytest.raises(CallError) as caught:
        call(endpoint(hostile, mode))
    assert caught.value.error_class == "bad_usage" and "usage.completion_tokens" in caught.value.message


def test_a_run_with_broken_usage_stays_readable_and_resumes(hostile, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    first, config = generate(tmp_path, endpoint(hostile, "usage_huge", retries=0))
    assert first["status"] == "complete" and first["records"]["failed"] == 6
    again = run_generation(config, progress=False)
    assert again["status"] == "complete" and again["session"]["records"] == 0
    forced = run_generation(config, progress=False, force=True)
    assert forced["status"] == "complete"


def test_a_redirect_is_never_followed_and_stops_the_run(hostile, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    before = stats(hostile).get("sink", 0)
    summary, _ = generate(tmp_path, endpoint(hostile, "redirect", concurrency=2))
    assert (
        summary["status"] == "fatal"
        and "redirect" in summary["message"]
        and "localhost" in summary["message"]
    )
    assert stats(hostile).get("sink", 0) == before  # nothing, prompts or key, went to the other origin
    assert summary["records"] == {"accepted": 0, "rejected": 0, "failed": 0}


@pytest.mark.parametrize(
    ("mode", "stream"),
    [
        ("endless", False),
        ("gzip_bomb", False),
        ("huge_answer", False),
        ("long_answer", False),
        ("huge_line_stream", True),
    ],
)
def test_oversized_answers_are_cut_off_early(hostile, mode, stream):
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    with pytest.raises(CallError) as caught:
        call(endpoint(hostile, mode), stream=stream)
    assert caught.value.error_class == "response_too_large" and not caught.value.retryable
    assert time.monotonic() - started < 10
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert grown_mib < 64, f"{mode}: peak RSS grew {grown_mib:.0f} MiB"


def test_the_size_limit_is_configurable(hostile):
    assert call(endpoint(hostile, "ok")).text
    with pytest.raises(CallError) as caught:
        call(endpoint(hostile, "ok", max_response_bytes=256))
    assert caught.value.error_class == "response_too_large" and "256 bytes" in caught.value.message


# -- waits, limits, wrong model, budget ------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["retry_after_huge", "retry_after_inf"])
def test_server_asked_waits_are_capped(hostile, mode):
    target = endpoint(hostile, mode, max_retry_wait_s=0.3)
    results = {}

    async def main():
        session = EndpointSession(target, KEY, retry=RetryPolicy(max_attempts=2, base_delay_s=0.01))
        try:
            return await session.run([Job(0, request())], lambda job, r: results.update({job.key: r}))
        finally:
            await session.close()

    started = time.monotonic()
    outcome = asyncio.run(main())
    assert time.monotonic() - started < 5
    assert outcome.failed == {"rate_limited": 1} and results[0].error_class == "rate_limited"


def test_a_tpm_below_one_request_is_refused_before_sending(hostile, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    before = stats(hostile).get("ok", 0)
    with pytest.raises(LimitError, match=r"tokens-per-minute limit is 100 \(teacher.tpm\)"):
        generate(tmp_path, endpoint(hostile, "ok", tpm=100))
    assert stats(hostile).get("ok", 0) == before


def test_a_wrong_model_name_stops_the_run_like_a_bad_key(hostile, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    before = stats(hostile).get("model_not_found", 0)
    summary, _ = generate(tmp_path, endpoint(hostile, "model_not_found", concurrency=2), rows=40)
    assert summary["status"] == "fatal" and "not_found" in summary["message"]
    assert summary["records"]["failed"] == 0  # no failure record per request: a fixed config resumes them all
    assert stats(hostile)["model_not_found"] - before <= 2


def test_in_flight_requests_cannot_overshoot_the_budget(hostile, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    price = {"input_per_million": 1000.0, "output_per_million": 1000.0}
    # Each request may cost up to ~0.27 (prompt + max_tokens 256); 64 in flight would overshoot 1.0 by far.
    summary, config = generate(
        tmp_path, endpoint(hostile, "ok", price=price, concurrency=64), rows=200, budget=1.0
    )
    assert summary["status"] == "budget_reached"
    assert 0 < summary["cost"]["total"] <= 1.0 and summary["done"] < 200
