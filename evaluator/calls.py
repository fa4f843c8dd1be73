"""Paid calls (teacher answers, judge verdicts) through an engine session on the endpoint, cached.

Every finished call is appended to a JSONL cache keyed by a fingerprint of the endpoint and the full request,
and flushed before the next result is handled, so a rerun — after a crash, Ctrl-C or a config change that
touches only some calls — sends only what is not there yet. Failed calls are not cached: a rerun retries them.
Before the first paid call the endpoint is asked for ``/v1/models``, so a wrong URL or key is a clear error
before any money is spent.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from distill.engine.dispatch import FATAL
from distill.engine.prompts import estimate_prompt_tokens
from distill.engine.session import open_session
from distill.engine.types import CallFailure, ChatRequest, ChatResponse, Job

from distill.endpoint import Endpoint
from distill.errors import UserError


@dataclass(frozen=True, slots=True)
class Answer:
    """A finished call as the evaluator keeps it (from the wire or from the cache)."""

    text: str
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_ms: float | None
    cached: bool = False


@dataclass
class CallStats:
    requested: int = 0
    cached: int = 0
    sent: int = 0
    succeeded: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    elapsed_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "requested": self.requested,
            "cached": self.cached,
            "sent": self.sent,
            "succeeded": self.succeeded,
            "failed": dict(self.failed),
            "elapsed_s": round(self.elapsed_s, 3),
        }


def request_key(endpoint: Endpoint, request: ChatRequest) -> str:
    """Fingerprint of everything that decides the answer: where it is sent and what is asked."""
    payload = orjson.dumps(
        [
            endpoint.identity,
            request.model,
            request.messages,
            request.temperature,
            request.max_tokens,
            request.extra_body,
        ],
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(payload).hexdigest()


class CallCache:
    """Append-only JSONL: one line per finished call. A torn last line (killed mid-write) is ignored."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._entries: dict[str, Answer] = {}
        torn = False
        if self.path.exists():
            data = self.path.read_bytes()
            torn = bool(data) and not data.endswith(b"\n")
            for line in data.splitlines():
                try:
                    row = orjson.loads(line)
                    self._entries[row["key"]] = Answer(
                        row["text"],
                        row.get("finish_reason"),
                        row.get("prompt_tokens"),
                        row.get("completion_tokens"),
                        row.get("latency_ms"),
                        cached=True,
                    )
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    continue
        self._handle = open(self.path, "ab")  # noqa: SIM115 - kept open for the run, closed in close()
        if torn:  # end the torn line, so the next entry starts on a line of its own
            self._handle.write(b"\n")

    def get(self, key: str) -> Answer | None:
        return self._entries.get(key)

    def put(self, key: str, response: ChatResponse) -> Answer:
        usage = response.usage
        return self.put_answer(
            key,
            Answer(
                response.text,
                response.finish_reason,
                usage.prompt_tokens if usage else None,
                usage.completion_tokens if usage else None,
                round(response.latency_ms, 3),
            ),
        )

    def put_answer(self, key: str, answer: Answer) -> Answer:
        row = {
            "key": key,
            "text": answer.text,
            "finish_reason": answer.finish_reason,
            "prompt_tokens": answer.prompt_tokens,
            "completion_tokens": answer.completion_tokens,
            "latency_ms": answer.latency_ms,
        }
        self._handle.write(orjson.dumps(row) + b"\n")
        self._handle.flush()
        self._entries[key] = answer
        return answer

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> CallCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


async def run_calls(
    endpoint: Endpoint,
    role: str,
    requests: dict[str, ChatRequest],
    cache: CallCache,
    *,
    warnings: list[str] | None = None,
) -> tuple[dict[str, Answer | CallFailure], CallStats]:
    """Answers for ``requests`` (caller key → request): from the cache, else sent under admission control."""
    stats = CallStats(requested=len(requests))
    results: dict[str, Answer | CallFailure] = {}
    pending: list[Job] = []
    cache_keys: dict[str, str] = {}
    for key, request in requests.items():
        cache_key = request_key(endpoint, request)
        cache_keys[key] = cache_key
        hit = cache.get(cache_key)
        if hit is not None:
            results[key] = hit
            stats.cached += 1
            continue
        reserve = estimate_prompt_tokens(request.messages[-1]["content"]) + request.max_tokens
        pending.append(Job(key=key, request=request, reserved_tokens=reserve))
    if not pending:
        return results, stats

    def on_result(job: Job, outcome: ChatResponse | CallFailure) -> None:
        if isinstance(outcome, ChatResponse):
            results[job.key] = cache.put(cache_keys[job.key], outcome)
        else:
            results[job.key] = outcome

    async with open_session(endpoint) as session:
        found = await session.check(role)
        if warnings is not None:
            warnings.extend(found)
        outcome = await session.run(pending, on_result)
    stats.sent = outcome.sent
    stats.succeeded = outcome.succeeded
    stats.failed = outcome.failed
    stats.elapsed_s = outcome.elapsed_s
    if outcome.stopped_reason == FATAL and outcome.fatal is not None:
        raise UserError(
            f"{role} endpoint {endpoint.base_url} refused the run ({outcome.fatal.error_class}): "
            f"{outcome.fatal.message}; finished calls are cached, rerun after fixing it"
        )
    return results, stats


def run_calls_sync(
    endpoint: Endpoint, role: str, requests: dict[str, ChatRequest], cache: CallCache, **kwargs: Any
) -> tuple[dict[str, Answer | CallFailure], CallStats]:
    return asyncio.run(run_calls(endpoint, role, requests, cache, **kwargs))
