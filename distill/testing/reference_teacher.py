"""The reference teacher: an OpenAI-compatible server that answers the bundled contract task correctly.

No strong instruct model can be had offline, so for the bundled task this server stands in for one (a GPT-4o
class API): it finds the contract in the prompt, looks its ground truth up in the generator's truth.jsonl,
and answers in the CoT format with a correct step-by-step reasoning and the canonical JSON. Latency, streaming
and ``usage`` come from the engine's fake-teacher server, so the engine, evaluator and latency figures treat
it exactly like a remote API. Every number it produces is labelled "reference teacher" in reports.

It also serves the demo's judge (see ``pipeline.reference_judge``): a prompt that carries a reference answer
and an answer to grade gets a field-agreement score 0–10 instead of a contract answer.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from distill.pipeline.contract_task import EN_MARKERS, reference_reply
from distill.pipeline.contracts import Contract, load_truth
from distill.testing.fake_teacher import FakeTeacherSettings, build_app, run_on_uvloop, serve_until_signalled
from distill.testing.fake_teacher_answers import prompt_text, seeded
from distill.testing.fake_teacher_faults import error_body
from distill.testing.reference_judge import judge_reply

DESCRIPTION = (
    "REFERENCE TEACHER for the bundled contract task: answers are derived from the generator's ground truth "
    "(not from a model); it stands in for a strong API model such as GPT-4o, with realistic latency and usage."
)
MODEL_NAME = "reference-teacher"
JUDGE_MODEL_NAME = "reference-judge"  # same server; judge prompts are recognised by their content
_CONTRACT_NUMBER = re.compile(r"(?:合同编号|Contract No\.):\s*([A-Z]+-\d{4}-\d{5})")


def _squeeze(text: str) -> str:
    return "".join(text.split())


class ReferenceTeacher:
    """``responder(body) -> assistant text`` for the engine's fake-teacher app."""

    def __init__(self, contracts: list[Contract]) -> None:
        self.contracts = contracts
        self.by_number: dict[str, list[Contract]] = defaultdict(list)
        for contract in contracts:
            match = _CONTRACT_NUMBER.search(contract.text)
            if match:
                self.by_number[match.group(1)].append(contract)
        self.squeezed = {id(contract): _squeeze(contract.text) for contract in contracts}

    def find(self, prompt: str) -> Contract | None:
        """The known contract whose whole text appears in ``prompt`` (whitespace-insensitive)."""
        squeezed_prompt = _squeeze(prompt)
        candidates = [
            c for number in _CONTRACT_NUMBER.findall(prompt) for c in self.by_number.get(number, ())
        ]
        for contract in candidates or self.contracts:
            if self.squeezed[id(contract)] in squeezed_prompt:
                return contract
        return None

    def __call__(self, body: dict[str, Any]) -> str:
        prompt = prompt_text(body)
        verdict = judge_reply(prompt)
        if verdict is not None:
            return verdict
        contract = self.find(prompt)
        if contract is None:
            # A 400 (not a refusal text, not a 500): the engine records it as a permanent failure, no retries.
            raise web.HTTPBadRequest(
                text=orjson.dumps(
                    error_body(
                        400,
                        "unknown_input",
                        "the reference teacher only knows the contracts in its truth file; "
                        "this prompt contains none of them",
                    )
                ).decode(),
                content_type="application/json",
            )
        rng = seeded(contract.id, body.get("temperature"), body.get("seed"), body.get("n"))
        english_markers = EN_MARKERS[0] in prompt
        return reference_reply(contract, rng, english_markers=english_markers)


def reference_settings(
    *,
    port: int = 0,
    latency_ms: float = 400.0,
    latency_spread_ms: float = 150.0,
    stream_ms_per_token: float = 8.0,
) -> FakeTeacherSettings:
    """A realistic but demo-friendly API: ~0.4 s to the first token, ~125 tokens/s after it, no faults."""
    return FakeTeacherSettings(
        port=port,
        model=MODEL_NAME,
        latency_distribution="lognormal",
        latency_ms=latency_ms,
        latency_spread_ms=latency_spread_ms,
        stream_ms_per_token=stream_ms_per_token,
    )


class ReferenceTeacherSettings(BaseModel):
    """``distill serve-reference-teacher``: which contracts it knows and how fast it answers."""

    model_config = ConfigDict(extra="forbid")

    truth: list[Path] = Field(
        min_length=1, description="truth.jsonl written by `distill make-contracts` (repeatable)"
    )
    port: int = Field(default=0, ge=0, le=65535, description="0 picks a free port")
    latency_ms: float = Field(default=400.0, ge=0, description="mean time to the first token")
    latency_spread_ms: float = Field(default=150.0, ge=0, description="lognormal spread of the latency")
    stream_ms_per_token: float = Field(default=8.0, ge=0, description="time per output token when streaming")


def serve(settings: ReferenceTeacherSettings) -> None:
    """Serve until SIGINT or SIGTERM; the first line printed is its URL."""
    contracts = [contract for path in settings.truth for contract in load_truth(path)]
    server = reference_settings(
        port=settings.port,
        latency_ms=settings.latency_ms,
        latency_spread_ms=settings.latency_spread_ms,
        stream_ms_per_token=settings.stream_ms_per_token,
    )
    run_on_uvloop(_serve_forever(server, ReferenceTeacher(contracts)))


@web.middleware
async def _list_both_names(request: web.Request, handler):
    """``GET /v1/models`` lists the judge's name too, so clients that check the model list find it."""
    if request.method == "GET" and request.path == "/v1/models":
        names = (MODEL_NAME, JUDGE_MODEL_NAME)
        return web.json_response({"object": "list", "data": [{"id": n, "object": "model"} for n in names]})
    return await handler(request)


async def start_reference_server(
    settings: FakeTeacherSettings, teacher: ReferenceTeacher
) -> tuple[web.AppRunner, str]:
    """Listen in the running loop: the fake-teacher app with this responder. Returns (runner, base URL)."""
    app = build_app(settings, teacher)
    app.middlewares.append(_list_both_names)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, settings.host, settings.port, backlog=4096, reuse_address=True).start()
    port = runner.addresses[0][1]
    return runner, f"http://{settings.host}:{port}"


async def _serve_forever(settings: FakeTeacherSettings, teacher: ReferenceTeacher) -> None:
    runner, url = await start_reference_server(settings, teacher)
    print(f"listening on {url}", flush=True)
    print(f"{DESCRIPTION} Knows {len(teacher.contracts)} contracts (pid {os.getpid()}).", flush=True)
    await serve_until_signalled(runner)
