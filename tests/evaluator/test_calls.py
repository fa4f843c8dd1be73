"""Paid calls through the engine, cached on disk: a rerun sends nothing; unreachable or unauthorised endpoints
fail before any call is paid for."""

from __future__ import annotations

import json
import urllib.request

import pytest
from distill.engine.types import CallFailure, ChatRequest
from distill.evaluator.calls import Answer, CallCache, run_calls_sync

from distill.endpoint import Endpoint
from distill.errors import UserError
from distill.processes import free_port
from distill.testing.fake_teacher import FakeTeacherSettings, start_in_thread


def stats(base_url: str) -> dict:
    with urllib.request.urlopen(base_url + "/stats", timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture
def fake_api():
    base_url, stop = start_in_thread(FakeTeacherSettings(model="m", latency_ms=5), responder=lambda body: "8")
    yield base_url
    stop()


def requests(n: int) -> dict[str, ChatRequest]:
    return {
        f"k{i}": ChatRequest(messages=[{"role": "user", "content": f"q{i}"}], model="m", max_tokens=8)
        for i in range(n)
    }


def test_a_rerun_reads_the_cache_and_sends_nothing(fake_api, tmp_path):
    endpoint = Endpoint(base_url=fake_api + "/v1", model="m", api_key_env=None)
    with CallCache(tmp_path / "cache.jsonl") as cache:
        results, first = run_calls_sync(endpoint, "judge", requests(5), cache)
    assert first.succeeded == 5 and first.cached == 0
    assert all(isinstance(r, Answer) and r.text == "8" and not r.cached for r in results.values())
    sent = stats(fake_api)["total"]
    # A torn last line (the process killed mid-write) is ignored, not fatal.
    with open(tmp_path / "cache.jsonl", "ab") as handle:
        handle.write(b'{"key": "abc", "te')
    with CallCache(tmp_path / "cache.jsonl") as cache:
        results, second = run_calls_sync(endpoint, "judge", requests(6), cache)
    assert second.cached == 5 and second.succeeded == 1
    assert stats(fake_api)["total"] == sent + 1  # only the new call
    assert sum(1 for r in results.values() if isinstance(r, Answer) and r.cached) == 5
    with CallCache(tmp_path / "cache.jsonl") as cache:  # the call made after the torn line was kept too
        _, third = run_calls_sync(endpoint, "judge", requests(6), cache)
    assert third.cached == 6 and stats(fake_api)["total"] == sent + 1


def test_failed_calls_are_not_cached(fake_api, tmp_path):
    endpoint = Endpoint(base_url=fake_api + "/v1", model="m", api_key_env=None, retries=0)
    bad = {
        "x": ChatRequest(
            messages=[{"role": "user", "content": "q"}],
            model="m",
            extra_body={"fake_fault": {"kind": "500", "times": 1}},
        )
    }
    with CallCache(tmp_path / "cache.jsonl") as cache:
        results, outcome = run_calls_sync(endpoint, "teacher", bad, cache)
        assert isinstance(results["x"], CallFailure) and outcome.failed == {"server_error": 1}
    with CallCache(tmp_path / "cache.jsonl") as cache:
        results, outcome = run_calls_sync(endpoint, "teacher", bad, cache)
    assert outcome.cached == 0  # the failure was not remembered: it was sent again (and failed again)


def test_unreachable_endpoint_is_a_clear_error_before_spending(tmp_path):
    endpoint = Endpoint(base_url=f"http://127.0.0.1:{free_port()}/v1", model="m", api_key_env=None)
    with CallCache(tmp_path / "cache.jsonl") as cache, pytest.raises(UserError) as caught:
        run_calls_sync(endpoint, "judge", requests(2), cache)
    assert "cannot reach the judge at http://127.0.0.1" in str(caught.value) and "connection" in str(
        caught.value
    )


def test_rejected_key_is_a_clear_error_naming_the_endpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("EVAL_TEST_SERVER_KEY", "right-key")
    monkeypatch.setenv("EVAL_TEST_CLIENT_KEY", "wrong-key")
    base_url, stop = start_in_thread(
        FakeTeacherSettings(model="m", latency_ms=1, api_key_env="EVAL_TEST_SERVER_KEY")
    )
    try:
        endpoint = Endpoint(base_url=base_url + "/v1", model="m", api_key_env="EVAL_TEST_CLIENT_KEY")
        with CallCache(tmp_path / "cache.jsonl") as cache, pytest.raises(UserError) as caught:
            run_calls_sync(endpoint, "teacher", requests(2), cache)
        assert "teacher endpoint" in str(caught.value) and "auth" in str(caught.value)
        assert "wrong-key" not in str(caught.value)
        assert stats(base_url)["by_status"].get("200", 0) == 0
    finally:
        stop()
