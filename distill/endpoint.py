"""An OpenAI-compatible endpoint, declared once: where it is, which model, which key variable, its limits.

Every place that names a teacher, a judge or a student server nests an :class:`Endpoint` (the generator's
``teacher``, the evaluator's ``teacher`` and ``judge``, the servers `distill run` starts). The API key is
never part of it: only the NAME of the environment variable that holds the key, read by
:func:`resolve_api_key` when a session opens.
"""

from __future__ import annotations

import ipaddress
import os
import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from distill.errors import UserError

_COMPLETIONS_PATH = "/chat/completions"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Headers distill sets itself; the key only ever comes from api_key_env.
_RESERVED_HEADERS = frozenset(
    {"authorization", "content-type", "content-length", "host", "x-client-request-id"}
)


class Price(BaseModel):
    """What one model costs, per million tokens."""

    model_config = ConfigDict(extra="forbid")

    input_per_million: float = Field(ge=0, description="price of a million prompt tokens")
    output_per_million: float = Field(ge=0, description="price of a million completion tokens")
    currency: str = Field(default="USD", description="the currency of both prices")


class Endpoint(BaseModel):
    """One OpenAI-compatible ``/v1/chat/completions`` server and how to talk to it."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(description="OpenAI-compatible endpoint, e.g. https://api.openai.com/v1")
    model: str = Field(description="model name sent with every request")
    api_key_env: str | None = Field(
        default="OPENAI_API_KEY",
        description="NAME of the environment variable holding the key (null: none, for a local server)",
    )
    label: str | None = Field(default=None, description="how reports name this endpoint")
    concurrency: int = Field(default=64, ge=1, le=100_000, description="requests in flight at most")
    weight: float = Field(
        default=1.0,
        gt=0,
        description="in a pool, this endpoint's share of requests in flight while others have room too",
    )
    rpm: float | None = Field(default=None, gt=0, description="requests per minute limit")
    tpm: float | None = Field(
        default=None,
        gt=0,
        description="tokens per minute limit (prompt + max_tokens reserved, corrected by usage)",
    )
    learn_limits_from_headers: bool = Field(
        default=True, description="follow the server's x-ratelimit-* headers"
    )
    retries: int = Field(default=5, ge=0, le=100, description="retries of a transient failure")
    request_timeout_s: float = Field(default=300.0, gt=0, description="seconds for one whole answer")
    connect_timeout_s: float = Field(default=30.0, gt=0, description="seconds to open a connection")
    headers: dict[str, str] = Field(
        default_factory=dict, description="extra HTTP headers sent with every request"
    )
    price: Price | None = Field(default=None, description="per million tokens; spend is counted from usage")
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = Field(
        default="max_tokens",
        description="the body field that carries max_tokens (OpenAI's reasoning models want max_completion_tokens)",
    )
    max_response_bytes: int | None = Field(
        default=None,
        ge=256,
        description="bytes one answer may take (null: 1 MiB + 512 per max_tokens token)",
    )
    max_retry_wait_s: float = Field(
        default=120.0, gt=0, description="longest wait a server's Retry-After may impose before a retry"
    )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return validate_http_url(value)

    @field_validator("model")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("api_key_env")
    @classmethod
    def _variable_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.fullmatch(value):
            # Most likely the key itself: say so without repeating it.
            raise ValueError(
                "must be the NAME of an environment variable (letters, digits, _), such as OPENAI_API_KEY; "
                f"the value given ({len(value)} characters, not shown) looks like a key itself: put the key in "
                "a variable (export OPENAI_API_KEY=...) and name that variable here"
            )
        return value

    @field_validator("headers")
    @classmethod
    def _safe_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if name.lower() in _RESERVED_HEADERS:
                raise ValueError(f"header {name!r} is set by distill (the key comes only from api_key_env)")
            if any(c in name + text for c in "\r\n\0"):
                raise ValueError(f"header {name!r}: line breaks are not allowed in a header")
        return value

    @property
    def name(self) -> str:
        """How messages and reports name this endpoint."""
        return self.label or f"{self.model} at {self.base_url}"

    @property
    def identity(self) -> str:
        """Which server this is, for resume checks and answer caches (see :func:`endpoint_identity`)."""
        return endpoint_identity(self.base_url)


def validate_http_url(value: str) -> str:
    """An http(s) URL with a host, without a trailing slash; ValueError otherwise."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an http(s) URL such as https://api.openai.com/v1, got {value!r}")
    if parts.username or parts.password:
        raise ValueError("must not hold credentials: name the key's variable in api_key_env instead")
    return value.rstrip("/")


def normalise_base_url(base_url: str) -> str:
    """``http://host:port`` or ``.../v1`` → the ``.../v1`` prefix every OpenAI path hangs off."""
    url = base_url.rstrip("/")
    if url.endswith(_COMPLETIONS_PATH):
        url = url[: -len(_COMPLETIONS_PATH)]
    return url if url.endswith("/v1") else url + "/v1"


def is_loopback(base_url: str) -> bool:
    """Whether ``base_url`` names this machine (localhost, 127.0.0.0/8, ::1)."""
    host = urlsplit(base_url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def endpoint_identity(base_url: str) -> str:
    """Which server a URL names, for resume checks and answer caches: ``host[:port]``.

    A loopback port is left out: servers started on this machine (``vllm serve``, the reference teacher) get a
    free port at each start, and the model name, kept beside this, still tells them apart.
    """
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    return host if parts.port is None or is_loopback(base_url) else f"{host}:{parts.port}"


def resolve_api_key(endpoint: Endpoint) -> str | None:
    """The key from the environment; a local endpoint may go without one, a remote one may not."""
    name = endpoint.api_key_env
    key = os.environ.get(name, "").strip() if name else None
    if key:
        return key
    if is_loopback(endpoint.base_url):
        return None
    if not name:
        raise UserError(
            f"api_key_env is null but base_url {endpoint.base_url} is not a local address: "
            "set api_key_env to the name of the environment variable that holds the key"
        )
    if _looks_like_key(name):
        raise UserError(
            f"api_key_env must name the environment variable that holds the key for {endpoint.base_url}, but its "
            f"value ({len(name)} characters, not shown) looks like a key itself and no variable has that name: "
            "export the key in a variable (export OPENAI_API_KEY=...) and name that variable instead"
        )
    raise UserError(
        f"environment variable {name} is not set: export {name}=<your key> "
        f"(api_key_env names the variable that holds the key for {endpoint.base_url})"
    )


def _looks_like_key(name: str) -> bool:
    """Variable names are short and mostly upper case; keys are long mixes of cases and digits."""
    return len(name) >= 24 and any(c.islower() for c in name) and any(c.isdigit() for c in name)
