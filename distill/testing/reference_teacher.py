"""The reference teacher: an OpenAI-compatible server that answers a task correctly from its known answers.

No strong instruct model can be had offline, so this server stands in for one (a GPT-4o class API). For the
bundled contract task it finds the contract in the prompt, looks its ground truth up in the generator's
truth.jsonl, and answers in the CoT format with a correct step-by-step reasoning and the canonical JSON. For
a user's task it knows the answers the task's files give (``answers.jsonl``: input, answer) and answers with
a short generic reasoning and the known answer. Latency, streaming
and ``usage`` come from the engine's fake-teacher server, so the engine, evaluator and latency figures treat
it exactly like a remote API. Every number it produces is labelled "reference teacher" in reports.

It also serves the demo's judge (see ``testing.reference_judge``): a prompt that carries a reference answer
and an answer to grade gets a rubric score 0–10 instead of an answer.
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, model_validator

from distill.files import read_jsonl
from distill.pipeline.contract_task import EN_MARKERS, ZH_MARKERS, reference_reply
from distill.pipeline.contracts import Contract, load_truth
from distill.pipeline.servers import REFERENCE_JUDGE_MODEL as JUDGE_MODEL_NAME
from distill.pipeline.servers import REFERENCE_MODEL as MODEL_NAME
from distill.testing.fake_teacher import FakeTeacherSettings, build_app, run_on_uvloop, serve_until_signalled
from distill.testing.fake_teacher_answers import prompt_text, seeded
from distill.testing.fake_teacher_faults import error_body
from distill.testing.reference_judge import judge_reply

DESCRIPTION = (
    "REFERENCE TEACHER: answers come from known answers (the contract generator's ground truth, or a task's "
    "answers file), not from a model; it stands in for a strong API model such as GPT-4o, with realistic "
    "latency and usage."
)
_CONTRACT_NUMBER = re.compile(r"(?:合同编号|Contract No\.):\s*([A-Z]+-\d{4}-\d{5})")


def _squeeze(text: str) -> str:
    return "".join(text.split())


@dataclass(frozen=True)
class KnownAnswer:
    """One input of a user's task and its answer (text, or a JSON value for a structured task)."""

    input: str
    answer: Any

    def text(self) -> str:
        return self.answer if isinstance(self.answer, str) else json.dumps(self.answer, ensure_ascii=False)


def load_answers(path: str | os.PathLike) -> list[KnownAnswer]:
    """Read an answers.jsonl (one ``{"input": ..., "answer": ...}`` a line) written by `distill run`."""
    return read_jsonl(
        path,
        lambda row: KnownAnswer(str(row["input"]), row["answer"]),
        "an answers.jsonl line (input, answer)",
    )


_ZH_STEPS = (
    "1. 通读输入,找出任务要求的内容。",
    "2. 逐项核对原文中的名称、数字和日期。",
    "3. 按要求的格式写出答案。",
)
_EN_STEPS = (
    "1. Read the input and find what the task asks for.",
    "2. Check every name, number and date against the text.",
    "3. Write the answer in the required format.",
)


def known_reply(known: KnownAnswer, prompt: str) -> str:
    """A reply to a user's task: short generic reasoning, then the known answer, in the prompt's markers."""
    english = EN_MARKERS[0] in prompt or ZH_MARKERS[0] not in prompt
    think, answer = EN_MARKERS if english else ZH_MARKERS
    steps = "\n".join(_EN_STEPS if english else _ZH_STEPS)
    return f"{think}\n{steps}\n\n{answer}\n{known.text()}"


class ReferenceTeacher:
    """``responder(body) -> assistant text`` for the engine's fake-teacher app."""

    def __init__(self, contracts: list[Contract], known: list[KnownAnswer] | None = None) -> None:
        self.contracts = contracts
        self.known = {_squeeze(item.input): item for item in known or ()}
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

    def find_known(self, prompt: str) -> KnownAnswer | None:
        """The known input that appears whole in ``prompt`` (whitespace-insensitive); the longest wins."""
        squeezed_prompt = _squeeze(prompt)
        found = [key for key in self.known if key in squeezed_prompt]
        return self.known[max(found, key=len)] if found else None

    def __call__(self, body: dict[str, Any]) -> str:
        prompt = prompt_text(body)
        verdict = judge_reply(prompt)
        if verdict is not None:
            return verdict
        contract = self.find(prompt)
        if contract is None:
            known = self.find_known(prompt)
            if known is not None:
                return known_reply(known, prompt)
            # A 400 (not a refusal text, not a 500): the engine records it as a permanent failure, no retries.
            raise web.HTTPBadRequest(
                text=orjson.dumps(
                    error_body(
                        400,
                        "unknown_input",
                        "the reference teacher only knows the inputs in its truth and answers files; "
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
    """``distill serve-reference-teacher``: which answers it knows and how fast it answers."""

    model_config = ConfigDict(extra="forbid")

    truth: list[Path] = Field(
        default_factory=list, description="truth.jsonl written by `distill make-contracts` (repeatable)"
    )
    answers: list[Path] = Field(
        default_factory=list, description="answers.jsonl (input, answer) of a task, written by `distill run`"
    )
    port: int = Field(default=0, ge=0, le=65535, description="0 picks a free port")
    latency_ms: float = Field(default=400.0, ge=0, description="mean time to the first token")
    latency_spread_ms: float = Field(default=150.0, ge=0, description="lognormal spread of the latency")
    stream_ms_per_token: float = Field(default=8.0, ge=0, description="time per output token when streaming")

    @model_validator(mode="after")
    def _knows_something(self) -> ReferenceTeacherSettings:
        if not self.truth and not self.answers:
            raise ValueError("give --truth (contracts) or --answers (a task's known answers), or both")
        return self


def serve(settings: ReferenceTeacherSettings) -> None:
    """Serve until SIGINT or SIGTERM; the first line printed is its URL."""
    contracts = [contract for path in settings.truth for contract in load_truth(path)]
    known = [item for path in settings.answers for item in load_answers(path)]
    server = reference_settings(
        port=settings.port,
        latency_ms=settings.latency_ms,
        latency_spread_ms=settings.latency_spread_ms,
        stream_ms_per_token=settings.stream_ms_per_token,
    )
    run_on_uvloop(_serve_forever(server, ReferenceTeacher(contracts, known)))


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
    print(
        f"{DESCRIPTION} Knows {len(teacher.contracts)} contracts and {len(teacher.known)} other answers "
        f"(pid {os.getpid()}).",
        flush=True,
    )
    await serve_until_signalled(runner)
