"""The aiohttp client against the real fake teacher over loopback HTTP."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from distill.engine.client import OpenAIChatClient
from distill.engine.errors import CallError
from distill.engine.types import ChatRequest

from distill.endpoint import Endpoint

SECRET = "sk-test-0123456789abcdefSECRET"


def request(text="Summarise: the cat sat on the mat.", request_id="r#0", **extra):
    return ChatRequest([{"role": "user", "content": text}], "fake", 0.3, 512, request_id, extra or None)


def endpoint(base_url: str, **fields) -> Endpoint:
    return Endpoint(base_url=base_url, model="fake", api_key_env=None, **fields)


async def complete(base_url, req, *, key=None, stream=False, on_headers=None, **fields):
    async with OpenAIChatClient(endpoint(base_url, **fields), key, on_headers=on_headers) as client:
        return await client.complete(req, stream=stream)


def test_plain_completion_has_text_usage_and_latency(fake_teacher_thread):
    teacher = fake_teacher_thread(latency_ms=30)
    response = asyncio.run(complete(teacher.base_url, request(request_id="doc-1#0")))
    assert response.text.startswith("[Thinking]") and "[Final Answer]" in response.text
    assert response.finish_reason == "stop"
    assert response.usage.prompt_tokens > 0 and response.usage.completion_tokens > 10
    assert response.latency_ms >= 30
    assert response.ttft_ms is None
    # The request id travelled as X-Client-Request-Id: the server counted it.
    assert teacher.stats()["unique_ids"] == 1


def test_streaming_times_the_first_token_and_each_chunk(fake_teacher_thread):
    teacher = fake_teacher_thread(latency_ms=150, stream_ms_per_token=4)
    plain = asyncio.run(complete(teacher.base_url, request()))
    streamed = asyncio.run(complete(teacher.base_url, request(), stream=True))
    assert streamed.text == plain.text
    assert streamed.usage == plain.usage
    assert streamed.ttft_ms == pytest.approx(150, abs=40)
    gaps = [later - earlier for earlier, later in itertools.pairwise(streamed.chunk_times_ms)]
    assert sorted(gaps)[len(gaps) // 2] == pytest.approx(4, abs=1.5)
    assert streamed.latency_ms >= 150 + 4 * (streamed.usage.completion_tokens - 1) * 0.9


@pytest.mark.parametrize(
    ("kind", "error_class", "retryable"),
    [
        ("500", "server_error", True),
        ("503", "server_error", True),
        ("429", "rate_limited", True),
        ("reset", "connection", True),
        ("truncated", "bad_response", True),
        ("non_json", "bad_response", True),
        ("400", "bad_request", False),
        ("401", "auth", False),
        ("404", "not_found", False),
        ("context_length", "context_length", False),
        ("content_filter", "content_filter", False),
        ("quota", "quota_exceeded", False),
    ],
)
def test_failures_are_classified(fake_teacher_thread, kind, error_class, retryable):
    teacher = fake_teacher_thread(latency_ms=1)
    with pytest.raises(CallError) as caught:
        asyncio.run(complete(teacher.base_url, request(fake_fault={"kind": kind})))
    assert (caught.value.error_class, caught.value.retryable) == (error_class, retryable)


def test_streamed_body_cut_off_is_a_bad_response(fake_teacher_thread):
    teacher = fake_teacher_thread(latency_ms=1, truncated_rate=1.0)
    with pytest.raises(CallError) as caught:
        asyncio.run(complete(teacher.base_url, request(), stream=True))
    assert caught.value.error_class == "bad_response"


def test_timeout_is_classified(fake_teacher_thread):
    teacher = fake_teacher_thread(latency_ms=1)
    with pytest.raises(CallError) as caught:
        asyncio.run(
            complete(
                teacher.base_url, request(fake_fault={"kind": "hang", "seconds": 5}), request_timeout_s=0.3
            )
        )
    assert caught.value.error_class == "timeout" and caught.value.retryable


def test_unreachable_endpoint_is_a_connection_error():
    from distill.processes import free_port

    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(CallError) as caught:
        asyncio.run(complete(url, request()))
    assert caught.value.error_class == "connection"


def test_key_never_appears_in_errors_or_repr(fake_teacher_thread, monkeypatch):
    monkeypatch.setenv("FAKE_TEACHER_KEY", "sk-the-right-one")
    teacher = fake_teacher_thread(latency_ms=1, api_key_env="FAKE_TEACHER_KEY")
    # The server echoes the wrong key it got in its 401 body, as careless servers do.
    with pytest.raises(CallError) as caught:
        asyncio.run(complete(teacher.base_url, request(), key=SECRET))
    error = caught.value
    assert error.error_class == "auth" and error.fatal
    for text in (str(error), repr(error), error.message):
        assert SECRET not in text
    assert "***" in error.message  # it was there, and was scrubbed
    client = OpenAIChatClient(endpoint(teacher.base_url), SECRET)
    assert SECRET not in repr(client) and "***" in repr(client)
    # The right key works.
    assert asyncio.run(complete(teacher.base_url, request(), key="sk-the-right-one")).text


def test_list_models_checks_reachability(fake_teacher_thread):
    teacher = fake_teacher_thread(model="teacher-x")

    async def models():
        async with OpenAIChatClient(endpoint(teacher.base_url + "/v1/"), None) as client:
            return await client.list_models()

    assert asyncio.run(models()) == ["teacher-x"]


def test_headers_reach_the_observer(fake_teacher_thread):
    teacher = fake_teacher_thread(latency_ms=1, rpm=600, tpm=100000)
    seen = []
    asyncio.run(complete(teacher.base_url, request(), on_headers=seen.append))
    assert seen and seen[0]["x-ratelimit-limit-requests"] == "600"
    assert seen[0]["x-ratelimit-limit-tokens"] == "100000"
