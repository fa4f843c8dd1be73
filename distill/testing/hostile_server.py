"""A hostile (and a realistic) OpenAI-compatible server for tests: one server behaviour per URL path.

A client pointed at ``http://127.0.0.1:PORT/<mode>/v1`` meets ``mode`` on every ``POST .../chat/completions``;
``GET .../models`` always answers (so reachability checks pass and the harm comes on the paid call).
``GET /stats`` counts requests by mode and ``"sink"`` counts requests that followed a redirect. Modes:

- ``ok``: a well-formed chain-of-thought answer (the fake teacher's).
- ``echo_key_error``: a 400 whose JSON message holds the ``Authorization`` header it got, placed so that a
  300-character cut falls inside the key. ``echo_key_html``: the same in a non-JSON 502 page, the key
  straddling an 80-character preview. ``echo_key_answer``: a 200 whose answer quotes the key.
  ``echo_key_model``: a 200 whose ``model`` field is the key.
- ``usage_negative``, ``usage_huge`` (beyond 64 bits), ``usage_text`` (a string), ``usage_fraction``: a good
  answer with a broken ``usage``.
- ``redirect``: a 307 to another origin (``localhost`` instead of ``127.0.0.1``), whose ``sink`` counts what
  arrives there.
- ``endless``: a 200 whose body never ends (64 KiB chunks as fast as the client reads them).
- ``gzip_bomb``: a small gzip body that inflates to 256 MiB.
- ``huge_answer``: a complete JSON answer of 8 MiB. ``long_answer``: a small body whose answer has far more
  characters than ``max_tokens`` tokens could hold.
- ``huge_line_stream``: a streamed answer with one 4 MiB event line.
- ``retry_after_huge`` / ``retry_after_inf``: 429 with ``Retry-After: 999999`` / ``inf``.
- ``model_not_found``: 404 ``model_not_found`` (the model name is wrong).

Behaviours of real teachers (plain and streamed, as the request asks):

- ``reasoning``: a reasoning model: the thinking in ``message.reasoning_content`` (streamed as
  ``delta.reasoning_content``), the answer alone in ``content``, reasoning tokens in
  ``usage.completion_tokens_details``. ``reasoning_alt``: the same in ``message.reasoning``.
  ``reasoning_cut``: the same, cut off by ``max_tokens`` (``finish_reason: length``).
- ``structured``: a JSON answer that fills every property of the request's ``response_format`` schema;
  ``structured_violating``: one that leaves the schema's first required property out.

``GET /stats`` also holds ``last_body``: the body of the last chat request, so a test sees what was sent.
"""

from __future__ import annotations

import asyncio
import json
import time
import zlib
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from distill.testing.fake_teacher import serve_in_thread
from distill.testing.fake_teacher_answers import cot_answer, count_tokens, prompt_text

MODES = (
    "ok",
    "echo_key_error",
    "echo_key_html",
    "echo_key_answer",
    "echo_key_model",
    "usage_negative",
    "usage_huge",
    "usage_text",
    "usage_fraction",
    "redirect",
    "endless",
    "gzip_bomb",
    "huge_answer",
    "long_answer",
    "huge_line_stream",
    "retry_after_huge",
    "retry_after_inf",
    "model_not_found",
    "reasoning",
    "reasoning_alt",
    "reasoning_cut",
    "structured",
    "structured_violating",
)
MODEL = "hostile"
_CUT = 300  # where a careless client cuts error messages
_PREVIEW = 80  # and non-JSON previews
_BOMB_BYTES = 256 * 1024 * 1024


def _completion(text: str, usage: dict[str, Any], model: str = MODEL) -> dict[str, Any]:
    return {
        "id": "chatcmpl-hostile",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": usage,
    }


def _usage(body: dict[str, Any], text: str) -> dict[str, Any]:
    prompt, completion = count_tokens(prompt_text(body)), count_tokens(text)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(data), content_type="application/json", headers=headers
    )


class HostileServer:
    def __init__(self) -> None:
        self.stats: Counter[str] = Counter()
        self.last_body: Any = None
        self._bomb: bytes | None = None

    def bomb(self) -> bytes:
        """gzip of a 256 MiB JSON answer, built a MiB at a time (the server never holds the inflated body)."""
        if self._bomb is None:
            packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
            parts = [packer.compress(b'{"choices": [{"message": {"content": "')]
            block = b" " * (1 << 20)
            parts += [packer.compress(block) for _ in range(_BOMB_BYTES // len(block))]
            parts.append(packer.compress(b'"}}]}') + packer.flush())
            self._bomb = b"".join(parts)
        return self._bomb

    async def models(self, request: web.Request) -> web.Response:
        return _json({"object": "list", "data": [{"id": MODEL, "object": "model"}]})

    async def sink(self, request: web.Request) -> web.Response:
        self.stats["sink"] += 1
        await request.read()
        return _json(_completion("【思考过程】redirected【最终答案】accepted from elsewhere", {}))

    async def get_stats(self, request: web.Request) -> web.Response:
        return _json({**self.stats, "last_body": self.last_body})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        mode = request.match_info["mode"]
        self.stats[mode] += 1
        self.stats["total"] += 1
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return _json({"error": {"message": "bad json"}}, status=400)
        self.last_body = body
        auth = request.headers.get("Authorization", "")
        text = cot_answer(prompt_text(body), request.headers.get("X-Client-Request-Id", "hostile"), 0.0)
        usage = _usage(body, text)
        if mode == "ok":
            return _json(_completion(text, usage))
        if mode == "echo_key_error":
            lead = "Invalid request, you sent "
            padding = "." * max(0, _CUT - len(lead) - len("Bearer ") - 6)
            return _json({"error": {"message": lead + padding + auth, "type": "invalid_request_error"}}, 400)
        if mode == "echo_key_html":
            lead = "<html>Bad Gateway: "
            padding = "." * max(0, _PREVIEW - len(lead) - len("Bearer ") - 6)
            return web.Response(status=502, text=lead + padding + auth + "</html>", content_type="text/html")
        if mode == "echo_key_answer":
            echoed = text.replace("【最终答案】", f"【最终答案】您的请求头是 {auth}。", 1)
            return _json(_completion(echoed, usage))
        if mode == "echo_key_model":
            return _json(_completion(text, usage, model=auth.removeprefix("Bearer ")))
        if mode.startswith("usage_"):
            broken = {"negative": -5, "huge": 2**70, "text": "12", "fraction": 1.5}[
                mode.removeprefix("usage_")
            ]
            payload = json.dumps(
                _completion(text, {**usage, "completion_tokens": broken})
            )  # orjson: 64 bits only
            return web.Response(text=payload, content_type="application/json")
        if mode == "redirect":
            port = request.url.port
            return web.Response(
                status=307, headers={"Location": f"http://localhost:{port}/sink/v1/chat/completions"}
            )
        if mode == "endless":
            return await self._endless(request)
        if mode == "gzip_bomb":
            return web.Response(
                body=self.bomb(), headers={"Content-Type": "application/json", "Content-Encoding": "gzip"}
            )
        if mode == "huge_answer":
            return _json(_completion("答" * (8 * 1024 * 1024 // 3), usage))
        if mode == "long_answer":
            max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or 16)
            return _json(_completion("【思考过程】x【最终答案】" + "word " * (max_tokens * 40), usage))
        if mode == "huge_line_stream":
            return await self._huge_line(request)
        if mode.startswith("retry_after_"):
            value = {"huge": "999999", "inf": "inf"}[mode.removeprefix("retry_after_")]
            return _json(
                {"error": {"message": "Rate limit reached", "type": "rate_limit_exceeded"}},
                429,
                headers={"Retry-After": value},
            )
        if mode == "model_not_found":
            return _json(
                {
                    "error": {
                        "message": "The model does not exist.",
                        "type": "invalid_request_error",
                        "code": "model_not_found",
                    }
                },
                404,
            )
        if mode.startswith("reasoning"):
            return await self._reasoning(request, body, text, mode)
        if mode.startswith("structured"):
            return _json(
                _completion(orjson.dumps(_fill(body, violate=mode.endswith("violating"))).decode(), usage)
            )
        return _json({"error": {"message": f"unknown mode {mode}"}}, 400)

    async def _reasoning(
        self, request: web.Request, body: dict[str, Any], text: str, mode: str
    ) -> web.StreamResponse:
        thinking, answer = text.split("【最终答案】") if "【最终答案】" in text else (text, "done")
        thinking = thinking.replace("【思考过程】", "").strip()
        answer = answer.strip()
        field = "reasoning" if mode == "reasoning_alt" else "reasoning_content"
        finish = "length" if mode == "reasoning_cut" else "stop"
        if finish == "length":
            answer = answer[: len(answer) // 2]
        reasoning_tokens = count_tokens(thinking)
        completion = reasoning_tokens + count_tokens(answer)
        usage = {
            "prompt_tokens": count_tokens(prompt_text(body)),
            "completion_tokens": completion,
            "total_tokens": count_tokens(prompt_text(body)) + completion,
            "completion_tokens_details": {"reasoning_tokens": reasoning_tokens},
        }
        if not body.get("stream"):
            data = _completion(answer, usage)
            data["choices"][0]["message"][field] = thinking
            data["choices"][0]["finish_reason"] = finish
            return _json(data)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)

        def event(delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> bytes:
            choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
            return b"data: " + orjson.dumps({"model": MODEL, "choices": [choice], **extra}) + b"\n\n"

        for piece in thinking.split("\n"):
            await response.write(event({field: piece + "\n"}))
        for piece in answer.split(" "):
            await response.write(event({"content": piece + " "}))
        await response.write(event({}, finish))
        await response.write(b"data: " + orjson.dumps({"choices": [], "usage": usage}) + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        return response

    async def _endless(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        await response.write(b'{"choices": [{"message": {"content": "')
        chunk = b"x" * 65536
        try:
            while True:
                await response.write(chunk)
        except (ConnectionError, asyncio.CancelledError):
            pass
        return response

    async def _huge_line(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        event = {"choices": [{"index": 0, "delta": {"content": "x" * (4 * 1024 * 1024)}}]}
        try:
            await response.write(b"data: " + orjson.dumps(event) + b"\n\n")
            await response.write(b"data: [DONE]\n\n")
        except ConnectionError:
            pass
        return response


def _fill(body: dict[str, Any], *, violate: bool) -> dict[str, Any]:
    """A JSON answer for the request's ``response_format`` schema: every property filled with a value of its
    type; with ``violate``, the first required property left out."""
    schema = ((body.get("response_format") or {}).get("json_schema") or {}).get("schema") or {}
    samples = {
        "string": "甲方A公司",
        "integer": 3000,
        "number": 3000.0,
        "boolean": True,
        "array": [],
        "object": {},
    }
    answer = {
        name: samples.get(spec.get("type") if isinstance(spec, dict) else "string", "x")
        for name, spec in (schema.get("properties") or {}).items()
    }
    if violate and schema.get("required"):
        answer.pop(schema["required"][0], None)
    return answer


def build_app() -> web.Application:
    server = HostileServer()
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_post("/sink/v1/chat/completions", server.sink)
    app.router.add_post("/{mode}/v1/chat/completions", server.chat)
    app.router.add_get("/{mode}/v1/models", server.models)
    app.router.add_get("/stats", server.get_stats)
    return app


def start_hostile_in_thread() -> tuple[str, Callable[[], None]]:
    """Serve on 127.0.0.1 in a daemon thread: ``(base_url, stop)``; point clients at ``base_url/<mode>/v1``."""
    return serve_in_thread(build_app, "hostile-server")
