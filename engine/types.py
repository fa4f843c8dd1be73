"""Plain request/response types shared by the client, the dispatcher and everything that calls a model.

No behaviour lives here: these are the nouns the rest of the engine (and the evaluator) pass around.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

Key = TypeVar("Key")


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One ``/v1/chat/completions`` call, provider-neutral."""

    messages: list[dict[str, str]]
    model: str
    temperature: float = 0.0
    max_tokens: int = 1024
    # Sent as the ``X-Client-Request-Id`` header: OpenAI logs it, our fake teacher counts it.
    request_id: str | None = None
    # Extra body fields passed through verbatim (top_p, seed, stop, ...).
    extra_body: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int  # reasoning tokens included, as OpenAI-style APIs count (and bill) them
    reasoning_tokens: int = 0  # `completion_tokens_details.reasoning_tokens`, when the server reports it

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(slots=True)
class ChatResponse:
    """A successful completion and how long it took."""

    text: str
    finish_reason: str | None
    usage: Usage | None
    latency_ms: float
    model: str | None = None
    # Only when streamed: time to the first content token (TPOT is derived where latency is measured:
    # evaluator.load_metrics.RequestTiming, from the end-to-end latency and the usage's token count).
    ttft_ms: float | None = None
    # Only when streamed: when each content chunk arrived, in ms after the request was sent (inter-token latency).
    chunk_times_ms: list[float] | None = None
    attempts: int = 1
    # A reasoning model's thinking, sent apart from the answer (`reasoning_content` or `reasoning`).
    reasoning: str | None = None
    endpoint: str | None = None  # which endpoint answered (its label), set by the dispatcher


@dataclass(slots=True)
class CallFailure:
    """A call that finally failed, after retries where the error class allows them."""

    error_class: str
    message: str  # never contains the API key
    status: int | None = None
    attempts: int = 1
    retryable: bool = False


@dataclass(slots=True)
class Job(Generic[Key]):
    """A request to send, the caller's key for it, and the tokens it may use at most."""

    key: Key
    request: ChatRequest
    reserved_tokens: int = 0
    meta: dict[str, Any] = field(default_factory=dict)
