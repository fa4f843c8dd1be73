"""The fake teacher's request handling: settings, counters, and the aiohttp routes.

``distill.testing.fake_teacher`` runs it (thread, process, CLI); answers come from ``fake_teacher_answers`` and
misbehaviour (limits, faults) from ``fake_teacher_faults``.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections import Counter
from typing import Any, Literal

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from distill.testing.fake_batches import add_batch_routes
from distill.testing.fake_teacher_answers import (
    Responder,
    completion_body,
    cot_answer,
    count_tokens,
    prompt_text,
    seeded,
    split_stream_pieces,
    truncate_to_tokens,
)
from distill.testing.fake_teacher_faults import (
    NAMED_ERRORS,
    FaultRates,
    ServerLimits,
    error_body,
    forced_fault,
    unit_draw,
)

_DUPLICATES_SHOWN = 1000
_HANG_S = 3600.0


def _rate(what: str) -> Any:
    """A share of requests (0 to 1) that meet one fault or kind of answer, drawn per request from ``seed``."""
    return Field(default=0.0, ge=0.0, le=1.0, description=f"share of requests {what}")


class FakeTeacherSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = Field(default="127.0.0.1", description="address to listen on")
    port: int = Field(default=0, ge=0, le=65535, description="0 picks a free port")
    model: str = Field(default="fake-teacher", description="model name answered when a request names none")
    latency_distribution: Literal["fixed", "uniform", "lognormal"] = Field(
        default="fixed", description="how each answer's latency is drawn around latency_ms"
    )
    latency_ms: float = Field(
        default=50.0, ge=0, description="mean time to the answer (to the first token when streaming)"
    )
    latency_spread_ms: float = Field(
        default=0.0, ge=0, description="uniform: half-width; lognormal: standard deviation"
    )
    stream_ms_per_token: float = Field(
        default=0.0, ge=0, description="time per output token after the first, when streaming"
    )
    rpm: float | None = Field(default=None, gt=0, description="server-enforced requests per minute")
    tpm: float | None = Field(
        default=None, gt=0, description="server-enforced tokens per minute (prompt + completion)"
    )
    burst_s: float = Field(
        default=60.0, gt=0, description="bucket capacity in seconds of the limit (OpenAI: 60)"
    )
    error_500_rate: float = _rate("answered 500")
    error_503_rate: float = _rate("answered 503")
    reset_rate: float = _rate("whose connection is reset before any answer")
    truncated_rate: float = _rate("whose answer body is cut off half way")
    slow_rate: float = _rate("answered slow_factor times later than usual")
    slow_factor: float = Field(default=10.0, ge=1, description="how much later a slow request is answered")
    bad_format_rate: float = _rate("answered without the CoT markers")
    refusal_rate: float = _rate("answered with a refusal")
    short_rate: float = _rate("answered with a too-short final answer")
    seed: int = Field(default=0, description="seed of every random draw: the same seed gives the same faults")
    api_key_env: str | None = Field(
        default=None, description="require 'Bearer $VAR' when set (the variable's name)"
    )
    # Files and batches endpoints (distill.testing.fake_batches).
    batch_ms_per_request: float = Field(default=1.0, ge=0, description="batches: time to execute one request")
    batch_validating_ms: float = Field(default=0.0, ge=0, description="batches: time spent validating")
    batch_finalizing_ms: float = Field(default=0.0, ge=0, description="batches: time spent finalizing")
    batch_error_rate: float = Field(
        default=0.0, ge=0, le=1, description="batches: share of requests answered 500 into the error file"
    )
    batch_expire_first: int = Field(
        default=0, ge=0, description="batches: the first N batches created expire"
    )
    batch_expire_after: float = Field(
        default=0.5, ge=0, lt=1, description="batches: share of its requests an expiring batch executes"
    )
    batch_api_latency_ms: float = Field(default=0.0, ge=0, description="latency of every files/batches call")
    batch_torn_download_rate: float = Field(
        default=0.0, ge=0, le=1, description="share of file downloads cut off half way"
    )
    batch_max_requests: int = Field(default=50_000, ge=1, description="batches: requests allowed per file")
    batch_max_bytes: int = Field(
        default=200 * 1024 * 1024, ge=1, description="batches: bytes allowed per file"
    )
    batch_result_fault: (
        Literal[
            "echo_key_answer",
            "echo_key_model",
            "echo_key_error",
            "long_answer",
            "huge_line",
            "usage_negative",
            "usage_huge",
            "usage_text",
            "padded_file",
        ]
        | None
    ) = Field(
        default=None,
        description="batches: how the result lines of batch_result_fault_rate of the requests misbehave (the "
        "key api_key_env names, echoed in the answer, the model field or an error; an answer longer than max_tokens allows; a line "
        "of more than 2 MiB; usage counts negative, beyond 64 bits or text, in the line and the batch; padded_file: the "
        "whole output file padded with empty lines past what its results could take)",
    )
    batch_result_fault_rate: float = Field(
        default=1.0,
        ge=0,
        le=1,
        description="batches: share of requests whose result line has batch_result_fault",
    )
    batch_hold: bool = Field(
        default=False,
        description="batches: each waits in progress until POST /control/batches/release lets it run, so a test "
        "paces a run by what it has done rather than by the clock",
    )
    batch_storage_dir: str | None = Field(
        default=None, description="where uploaded and output files are kept (default: a temporary directory)"
    )


class _Stats:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.total = 0
        self.by_status: Counter[str] = Counter()
        self.seen: dict[str, int] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.started = time.time()
        self.first_at: float | None = None  # arrival of the first request: benchmarks time resume start-up
        self.first_ok: float | None = None
        self.last_ok: float | None = None
        self.ok_by_second: Counter[int] = Counter()  # unix second → 200s: achieved rate over any window

    def as_dict(self) -> dict[str, Any]:
        duplicates = {rid: n for rid, n in self.seen.items() if n > 1}
        shown = dict(list(duplicates.items())[:_DUPLICATES_SHOWN])
        return {
            "total": self.total,
            "by_status": dict(self.by_status),
            "unique_ids": len(self.seen),
            "duplicate_ids": len(duplicates),
            "duplicate_requests": sum(n - 1 for n in duplicates.values()),
            "duplicates": shown,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "uptime_s": round(time.time() - self.started, 3),
            "first_at": self.first_at,
            "first_ok": self.first_ok,
            "last_ok": self.last_ok,
            "ok_by_second": {str(second): n for second, n in self.ok_by_second.items()},
        }


class FakeTeacherHandlers:
    """The routes' handlers and the state they share: counters, limits, fault rates."""

    def __init__(self, settings: FakeTeacherSettings, responder: Responder | None) -> None:
        self.settings = settings
        self.responder = responder
        self.stats = _Stats()
        self.limits = ServerLimits(settings.rpm, settings.tpm, settings.burst_s, time.monotonic())
        self.faults = FaultRates(
            settings.reset_rate,
            settings.truncated_rate,
            settings.error_500_rate,
            settings.error_503_rate,
            settings.slow_rate,
        )
        self.key = os.environ.get(settings.api_key_env, "") if settings.api_key_env else None

    # -- helpers ----------------------------------------------------------------------------------------

    def latency_s(self, request_key: str, attempt: int) -> float:
        s = self.settings
        mean, spread = s.latency_ms, s.latency_spread_ms
        if s.latency_distribution == "fixed" or spread == 0:
            return mean / 1000.0
        rng = seeded(s.seed, "latency", request_key, attempt)
        if s.latency_distribution == "uniform":
            return max(0.0, rng.uniform(mean - spread, mean + spread)) / 1000.0
        if mean <= 0:
            return 0.0
        sigma2 = math.log(1.0 + (spread / mean) ** 2)
        return rng.lognormvariate(math.log(mean) - sigma2 / 2.0, math.sqrt(sigma2)) / 1000.0

    def answer(self, body: dict[str, Any], request_key: str) -> str:
        if self.responder is not None:
            return self.responder(body)
        s = self.settings
        draw = unit_draw(s.seed, "answer", request_key)
        kind = "good"
        for name, rate in (
            ("bad_format", s.bad_format_rate),
            ("refusal", s.refusal_rate),
            ("short", s.short_rate),
        ):
            if draw < rate:
                kind = name
                break
            draw -= rate
        return cot_answer(prompt_text(body), request_key, float(body.get("temperature") or 0.0), kind=kind)

    def answer_within_limit(self, body: dict[str, Any], request_key: str) -> tuple[str, str, int, int]:
        """(text, finish_reason, prompt tokens, completion tokens): the answer, cut at the body's max_tokens."""
        prompt_tokens = count_tokens(prompt_text(body))
        text = self.answer(body, request_key)
        finish_reason = "stop"
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        if isinstance(max_tokens, int) and max_tokens > 0 and count_tokens(text) > max_tokens:
            text, finish_reason = truncate_to_tokens(text, max_tokens), "length"
        return text, finish_reason, prompt_tokens, count_tokens(text)

    def error(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> web.Response:
        self.stats.by_status[str(status)] += 1
        return web.Response(
            status=status,
            body=orjson.dumps(error_body(status, code, message)),
            content_type="application/json",
            headers=headers,
        )

    # -- handlers ---------------------------------------------------------------------------------------

    async def chat(self, request: web.Request) -> web.StreamResponse:
        stats = self.stats
        stats.total += 1
        if stats.first_at is None:
            stats.first_at = time.time()
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        try:
            return await self._chat(request)
        finally:
            stats.in_flight -= 1

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        stats, settings = self.stats, self.settings
        request_id = request.headers.get("X-Client-Request-Id")
        request_key = request_id or f"anonymous-{stats.total}"
        attempt = stats.seen.get(request_key, 0) + 1
        if request_id:
            stats.seen[request_id] = attempt
        if self.key is not None and request.headers.get("Authorization") != f"Bearer {self.key}":
            sent = request.headers.get("Authorization", "").removeprefix("Bearer ")
            # Echoes the key it got, as careless servers do: the client must scrub it from its errors.
            return self.error(401, "invalid_api_key", f"Incorrect API key provided: {sent}.")
        try:
            body = orjson.loads(await request.read())
            if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
                raise ValueError("'messages' must be a list")
        except (orjson.JSONDecodeError, ValueError) as exc:
            return self.error(400, "invalid_request_error", f"Malformed request body: {exc}")

        forced = forced_fault(body, attempt)
        if forced is not None:
            response = await self._forced(request, forced)
            if response is not None:
                return response

        text, finish_reason, prompt_tokens, completion_tokens = self.answer_within_limit(body, request_key)

        wait = self.limits.admit(prompt_tokens + completion_tokens, time.monotonic())
        limit_headers = self.limits.headers()
        if wait > 0:
            limit_headers["retry-after"] = str(math.ceil(wait))
            limit_headers["retry-after-ms"] = str(math.ceil(wait * 1000))
            return self.error(
                429, "rate_limit_exceeded", "Rate limit reached, please slow down.", limit_headers
            )

        fault = self.faults.pick(settings.seed, request_key, attempt)
        latency = self.latency_s(request_key, attempt)
        if fault == "slow":
            latency *= settings.slow_factor
        await asyncio.sleep(latency)
        if fault == "reset":
            return self._reset(request)
        if fault in ("error_500", "error_503"):
            status = 500 if fault == "error_500" else 503
            return self.error(
                status, "server_error", "The server had an error while processing your request."
            )

        stats.prompt_tokens += prompt_tokens
        stats.completion_tokens += completion_tokens
        model = str(body.get("model") or settings.model)
        created = int(time.time())
        completion_id = f"chatcmpl-{request_key}-{attempt}"
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return await self._stream(
                request,
                text,
                finish_reason,
                model,
                created,
                completion_id,
                usage if include_usage else None,
                truncated=fault == "truncated",
                headers=limit_headers,
            )
        payload = orjson.dumps(completion_body(completion_id, created, model, text, finish_reason, usage))
        if fault == "truncated":
            stats.by_status["truncated"] += 1
            payload = payload[: len(payload) // 2]
        else:
            self._ok()
        return web.Response(body=payload, content_type="application/json", headers=limit_headers)

    def _ok(self) -> None:
        self.stats.by_status["200"] += 1
        now = time.time()
        self.stats.first_ok = self.stats.first_ok or now
        self.stats.last_ok = now
        self.stats.ok_by_second[int(now)] += 1

    def _reset(self, request: web.Request) -> web.StreamResponse:
        self.stats.by_status["reset"] += 1
        if request.transport is not None:
            request.transport.abort()  # RST: the client sees a dropped connection, not an HTTP answer
        raise asyncio.CancelledError  # nothing more to write on a dead connection

    async def _forced(self, request: web.Request, fault: dict[str, Any]) -> web.StreamResponse | None:
        kind = str(fault.get("kind"))
        if kind == "reset":
            return self._reset(request)
        if kind == "hang":
            await asyncio.sleep(float(fault.get("seconds", _HANG_S)))
            return None
        if kind == "truncated":
            self.stats.by_status["truncated"] += 1
            return web.Response(
                body=b'{"id": "chatcmpl-cut", "choices": [{"mess', content_type="application/json"
            )
        if kind == "non_json":
            self.stats.by_status["non_json"] += 1
            return web.Response(text="<html>Bad Gateway</html>", content_type="text/html")
        if kind in NAMED_ERRORS:
            status, code, message = NAMED_ERRORS[kind]
            return self.error(status, code, message)
        if kind.isdigit():
            status = int(kind)
            headers = None
            if fault.get("retry_after") is not None:
                headers = {"retry-after": str(fault["retry_after"])}
            code = "rate_limit_exceeded" if status == 429 else "forced_error"
            return self.error(status, code, f"Forced {status} for testing.", headers)
        return self.error(400, "invalid_request_error", f"unknown fake_fault kind {kind!r}")

    async def _stream(
        self,
        request: web.Request,
        text: str,
        finish_reason: str,
        model: str,
        created: int,
        completion_id: str,
        usage: dict[str, int] | None,
        *,
        truncated: bool,
        headers: dict[str, str],
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={**headers, "Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        base = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model}

        def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            return b"data: " + orjson.dumps({**base, "choices": choices, **extra}) + b"\n\n"

        pieces = split_stream_pieces(text) or [""]
        tokens = max(1, count_tokens(text))
        # Spread (tokens - 1) token times over the gaps between pieces, so TPOT = stream_ms_per_token.
        gap_s = self.settings.stream_ms_per_token / 1000.0 * (tokens - 1) / max(1, len(pieces) - 1)
        await response.write(
            event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        )
        cut = len(pieces) // 2 if truncated else len(pieces)
        for index, piece in enumerate(pieces[:cut]):
            if index and gap_s:
                await asyncio.sleep(gap_s)
            await response.write(event([{"index": 0, "delta": {"content": piece}, "finish_reason": None}]))
        if truncated:
            self.stats.by_status["truncated"] += 1
            await response.write_eof()
            return response
        await response.write(event([{"index": 0, "delta": {}, "finish_reason": finish_reason}]))
        if usage is not None:
            await response.write(event([], usage=usage))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        self._ok()
        return response

    async def models(self, request: web.Request) -> web.Response:
        data = {
            "object": "list",
            "data": [{"id": self.settings.model, "object": "model", "owned_by": "distill"}],
        }
        return web.json_response(data, dumps=lambda obj: orjson.dumps(obj).decode())

    async def get_stats(self, request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(self.stats.as_dict()), content_type="application/json")

    async def reset_stats(self, request: web.Request) -> web.Response:
        self.stats.reset()
        return web.Response(body=b'{"reset": true}', content_type="application/json")


def build_app(
    settings: FakeTeacherSettings | None = None, responder: Responder | None = None
) -> web.Application:
    """The aiohttp application. ``responder(body) -> assistant text`` replaces the canned CoT answers."""
    teacher = FakeTeacherHandlers(settings or FakeTeacherSettings(), responder)
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/chat/completions", teacher.chat)
    app.router.add_get("/v1/models", teacher.models)
    app.router.add_get("/stats", teacher.get_stats)
    app.router.add_post("/stats/reset", teacher.reset_stats)
    add_batch_routes(app, teacher)
    return app
