"""The fake teacher's files and batches endpoints, driven through the ``openai`` SDK over real HTTP."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import Any

import openai
import pytest
from openai import AsyncOpenAI

ENDED = ("completed", "failed", "expired", "cancelled")


def _lines(count: int, prefix: str = "c", max_tokens: int = 200) -> bytes:
    rows = []
    for index in range(count):
        body = {
            "model": "m",
            "messages": [{"role": "user", "content": f"问题 {index}"}],
            "max_tokens": max_tokens,
        }
        rows.append(
            {"custom_id": f"{prefix}{index}", "method": "POST", "url": "/v1/chat/completions", "body": body}
        )
    return ("\n".join(json.dumps(row, ensure_ascii=False) for row in rows) + "\n").encode()


def _stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "/stats/batches", timeout=10) as response:
        return json.loads(response.read())


async def _finish(client: AsyncOpenAI, batch_id: str) -> Any:
    for _ in range(400):
        batch = await client.batches.retrieve(batch_id)
        if batch.status in ENDED:
            return batch
        await asyncio.sleep(0.02)
    raise AssertionError("batch did not end")


async def _content(client: AsyncOpenAI, file_id: str) -> list[dict[str, Any]]:
    async with client.files.with_streaming_response.content(file_id) as response:
        data = b"".join([chunk async for chunk in response.iter_bytes()])
    return [json.loads(line) for line in data.splitlines()]


def test_batch_runs_every_request_once_with_errors_in_the_error_file(fake_teacher_url) -> None:
    url = fake_teacher_url(batch_ms_per_request=0.1, batch_error_rate=0.2)

    async def scenario() -> None:
        client = AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        uploaded = await client.files.create(file=("in.jsonl", _lines(100)), purpose="batch")
        assert uploaded.bytes == len(_lines(100))
        batch = await client.batches.create(
            input_file_id=uploaded.id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
            metadata={"distill_run": "r", "distill_file": "f1"},
        )
        assert batch.status == "validating" and batch.metadata == {"distill_run": "r", "distill_file": "f1"}
        batch = await _finish(client, batch.id)
        assert batch.status == "completed"
        output = await _content(client, batch.output_file_id)
        errors = await _content(client, batch.error_file_id)
        assert batch.request_counts.completed == len(output) and batch.request_counts.failed == len(errors)
        assert 5 <= len(errors) <= 40  # 20% of 100, drawn per custom_id
        assert {line["custom_id"] for line in output + errors} == {f"c{i}" for i in range(100)}
        good = output[0]["response"]
        assert (
            good["status_code"] == 200 and "【最终答案】" in good["body"]["choices"][0]["message"]["content"]
        )
        assert errors[0]["response"]["status_code"] == 500
        assert batch.usage.input_tokens == sum(
            line["response"]["body"]["usage"]["prompt_tokens"] for line in output
        )
        await client.close()

    asyncio.run(scenario())
    stats = _stats(url)
    assert stats["batches_created"] == 1 and stats["requests_executed"] == 100
    assert stats["unique_requests_executed"] == 100 and stats["duplicate_executions"] == 0


def test_expiring_batch_runs_half_and_reports_the_rest_as_expired(fake_teacher_url) -> None:
    url = fake_teacher_url(batch_ms_per_request=0.1, batch_expire_first=1, batch_expire_after=0.5)

    async def scenario() -> None:
        client = AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        uploaded = await client.files.create(file=("in.jsonl", _lines(40)), purpose="batch")
        first = await _finish(
            client,
            (
                await client.batches.create(
                    input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
                )
            ).id,
        )
        assert first.status == "expired" and first.request_counts.completed == 20
        expired = await _content(client, first.error_file_id)
        assert len(expired) == 20 and {line["error"]["code"] for line in expired} == {"batch_expired"}
        second = await _finish(
            client,
            (
                await client.batches.create(
                    input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
                )
            ).id,
        )
        assert second.status == "completed" and second.request_counts.completed == 40
        await client.close()

    asyncio.run(scenario())
    assert _stats(url)["requests_executed"] == 60  # 20 in the expired batch, 40 in the second


def test_list_pages_with_after_and_limit_newest_first(fake_teacher_url) -> None:
    url = fake_teacher_url(batch_ms_per_request=0)

    async def scenario() -> None:
        client = AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        uploaded = await client.files.create(file=("in.jsonl", _lines(2)), purpose="batch")
        ids = []
        for index in range(7):
            batch = await client.batches.create(
                input_file_id=uploaded.id,
                endpoint="/v1/chat/completions",
                completion_window="24h",
                metadata={"n": str(index)},
            )
            ids.append(batch.id)
        page = await client.batches.list(limit=3)
        assert [batch.id for batch in page.data] == ids[::-1][:3] and page.has_more
        second = await client.batches.list(limit=3, after=page.data[-1].id)
        assert [batch.id for batch in second.data] == ids[::-1][3:6]
        assert [batch.id async for batch in client.batches.list(limit=2)] == ids[
            ::-1
        ]  # the SDK follows pages
        files = [item.filename async for item in client.files.list(purpose="batch")]
        assert files == ["in.jsonl"]
        await client.close()

    asyncio.run(scenario())


def test_cancel_keeps_what_ran_and_reports_the_rest_as_cancelled(fake_teacher_url) -> None:
    url = fake_teacher_url(batch_ms_per_request=20)

    async def scenario() -> None:
        client = AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        uploaded = await client.files.create(file=("in.jsonl", _lines(200)), purpose="batch")
        batch = await client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        await asyncio.sleep(0.3)
        cancelling = await client.batches.cancel(batch.id)
        assert cancelling.status == "cancelling"
        batch = await _finish(client, batch.id)
        assert batch.status == "cancelled" and 0 < batch.request_counts.completed < 200
        rest = await _content(client, batch.error_file_id)
        assert len(rest) == 200 - batch.request_counts.completed
        assert {line["error"]["code"] for line in rest} == {"batch_cancelled"}
        with pytest.raises(openai.BadRequestError):
            await client.batches.cancel(batch.id)
        await client.close()

    asyncio.run(scenario())


def test_torn_download_is_cut_short_of_its_content_length(fake_teacher_url) -> None:
    url = fake_teacher_url(batch_torn_download_rate=1.0)

    async def scenario() -> None:
        client = AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        uploaded = await client.files.create(file=("in.jsonl", _lines(50)), purpose="batch")
        received = 0
        with pytest.raises(Exception, match="complete message body"):
            async with client.files.with_streaming_response.content(uploaded.id) as response:
                async for chunk in response.iter_bytes():
                    received += len(chunk)
        assert 0 < received < uploaded.bytes
        await client.close()

    asyncio.run(scenario())
    assert _stats(url)["torn_downloads"] == 1


def test_invalid_input_file_fails_the_batch_and_runs_nothing(fake_teacher_url) -> None:
    url = fake_teacher_url(batch_max_requests=10)

    async def scenario() -> None:
        client = AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        too_many = await client.files.create(file=("big.jsonl", _lines(11)), purpose="batch")
        batch = await _finish(
            client,
            (
                await client.batches.create(
                    input_file_id=too_many.id, endpoint="/v1/chat/completions", completion_window="24h"
                )
            ).id,
        )
        assert batch.status == "failed" and batch.errors.data[0].code == "too_many_requests"
        broken = await client.files.create(
            file=("bad.jsonl", b'{"custom_id": "x"}\nnot json\n'), purpose="batch"
        )
        batch = await _finish(
            client,
            (
                await client.batches.create(
                    input_file_id=broken.id, endpoint="/v1/chat/completions", completion_window="24h"
                )
            ).id,
        )
        assert batch.status == "failed" and batch.errors.data[0].line == 1
        await client.close()

    asyncio.run(scenario())
    assert _stats(url)["requests_executed"] == 0


def test_batch_endpoints_need_the_key_when_the_server_does(fake_teacher_url, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_BATCH_KEY", "sk-batch-secret")
    url = fake_teacher_url(api_key_env="FAKE_BATCH_KEY")

    async def scenario() -> None:
        client = AsyncOpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            await client.files.create(file=("in.jsonl", _lines(1)), purpose="batch")
        client = AsyncOpenAI(base_url=url + "/v1", api_key="sk-batch-secret", max_retries=0)
        assert (await client.files.create(file=("in.jsonl", _lines(1)), purpose="batch")).bytes > 0
        await client.close()

    asyncio.run(scenario())
