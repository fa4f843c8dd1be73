"""Real teachers' behaviours over real HTTP (distill.testing.hostile_server): reasoning models (thinking in
`reasoning_content` / `reasoning`, streamed and not, cut off by max_tokens, reasoning tokens billed),
`max_completion_tokens`, and structured output sent as `response_format` (answers that keep to the schema
accepted, answers that do not rejected as `schema`)."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path

import pytest
from distill.engine.client import OpenAIChatClient
from distill.engine.config import GenerateConfig
from distill.engine.export import export_dataset
from distill.engine.records import iter_records
from distill.engine.runner import run_generation
from distill.engine.types import ChatRequest

from distill.endpoint import Endpoint
from distill.testing.hostile_server import start_hostile_in_thread

SCHEMA = {
    "type": "object",
    "properties": {"甲方": {"type": "string"}, "金额": {"type": "integer"}},
    "required": ["甲方", "金额"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def server():
    base_url, stop = start_hostile_in_thread()
    yield base_url
    stop()


def last_body(base_url: str) -> dict:
    with urllib.request.urlopen(base_url + "/stats", timeout=10) as response:
        return json.loads(response.read())["last_body"]


def endpoint(base_url: str, mode: str, **fields) -> Endpoint:
    return Endpoint(base_url=f"{base_url}/{mode}/v1", model="hostile", api_key_env=None, **fields)


def call(target: Endpoint, *, stream: bool):
    async def main():
        async with OpenAIChatClient(target, None) as client:
            request = ChatRequest(
                [{"role": "user", "content": "合同:甲方A公司,乙方B公司。"}], "hostile", 0.0, 512
            )
            return await client.complete(request, stream=stream)

    return asyncio.run(main())


def generate(tmp_path: Path, target: Endpoint, **settings) -> tuple[dict, GenerateConfig]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    inputs = tmp_path / "in.jsonl"
    inputs.write_text(
        "".join(json.dumps({"id": f"c{i}", "input": f"合同{i}:甲方A公司。"}) + "\n" for i in range(4))
    )
    config = GenerateConfig(
        input=inputs,
        output_dir=tmp_path / "run",
        teacher=target,
        task="抽取合同要素",
        max_tokens=512,
        **settings,
    )
    return run_generation(config, progress=False), config


@pytest.mark.parametrize("mode", ["reasoning", "reasoning_alt"])
@pytest.mark.parametrize("stream", [False, True])
def test_thinking_from_the_reasoning_field(server, mode, stream):
    response = call(endpoint(server, mode), stream=stream)
    assert response.reasoning and "1." in response.reasoning and "【" not in response.reasoning
    assert response.text.strip() and "【思考过程】" not in response.text
    assert response.usage.reasoning_tokens > 0
    assert response.usage.completion_tokens >= response.usage.reasoning_tokens  # billed with the answer


def test_a_reasoning_teachers_records_export_with_its_thinking(server, tmp_path):
    price = {"input_per_million": 0.0, "output_per_million": 1_000_000.0}
    summary, config = generate(tmp_path, endpoint(server, "reasoning", price=price))
    assert summary["status"] == "complete" and summary["records"]["accepted"] == 4
    records = list(iter_records(config.output_dir))
    assert {r.thinking_source for r in records} == {"field"}
    assert all(r.thinking and "1." in r.thinking and r.output for r in records)
    # Reasoning tokens are paid for: spend counts every completion token, thinking included.
    tokens = sum(r.usage.completion_tokens for r in records)
    assert summary["cost"]["total"] == pytest.approx(tokens, rel=1e-6)
    export_dataset(config.output_dir, tmp_path / "data", formats=("alpaca",), with_thinking=True)
    rows = [
        json.loads(line) for line in next((tmp_path / "data").glob("*alpaca*.jsonl")).read_text().splitlines()
    ]
    assert all(row["output"].startswith("【思考】") and "【答案】" in row["output"] for row in rows)
    assert records[0].thinking in rows[0]["output"] or any(
        r.thinking in row["output"] for r in records for row in rows
    )


def test_a_reasoning_answer_cut_by_max_tokens_is_truncated_not_accepted(server, tmp_path):
    summary, _ = generate(tmp_path, endpoint(server, "reasoning_cut"))
    assert summary["records"]["accepted"] == 0 and summary["rejected_by_reason"]["truncated"] == 4


def test_max_completion_tokens_where_the_api_wants_it(server):
    call(endpoint(server, "ok", max_tokens_field="max_completion_tokens"), stream=False)
    body = last_body(server)
    assert body["max_completion_tokens"] == 512 and "max_tokens" not in body


def test_structured_output_is_sent_and_checked(server, tmp_path):
    # The test server gives every input the same short answer: no length or duplicate filter here.
    loose = {"min_output_chars": 5, "dedupe": False}
    summary, config = generate(
        tmp_path / "ok",
        endpoint(server, "structured"),
        answer_schema=SCHEMA,
        structured_output=True,
        filters=loose,
    )
    sent = last_body(server)["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["schema"] == SCHEMA
    assert summary["records"]["accepted"] == 4
    records = list(iter_records(config.output_dir))
    assert {r.thinking_source for r in records} == {"none"} and json.loads(records[0].output)["金额"] == 3000
    violated, _ = generate(
        tmp_path / "bad",
        endpoint(server, "structured_violating"),
        answer_schema=SCHEMA,
        structured_output=True,
    )
    assert violated["records"]["accepted"] == 0 and violated["rejected_by_reason"]["schema"] == 4


def test_structured_output_needs_a_schema():
    with pytest.raises(ValueError, match="structured_output needs answer_schema"):
        GenerateConfig(
            input="in.jsonl",
            output_dir="out",
            teacher=endpoint("http://127.0.0.1:1", "ok"),
            structured_output=True,
        )
