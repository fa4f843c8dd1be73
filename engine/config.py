"""`distill generate`'s settings: one validated pydantic model, loaded from YAML with flags on top.

Everything a run needs is here so a run directory can be reproduced from its config; the API key is not:
only the *name* of the environment variable that holds it.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from distill.config_files import load_config
from distill.errors import UserError

# The seed's refusal phrases, then the English ones teachers actually use.
DEFAULT_REFUSALS = (
    "很抱歉",
    "无法回答",
    "I'm sorry",
    "I cannot",
    "抱歉，我无法",
    "我无法提供",
    "作为一个AI",
    "作为一个人工智能",
    "I can't help",
    "I can't assist",
    "I am unable to",
    "I'm unable to",
    "As an AI language model",
)


class Price(BaseModel):
    """What one model costs, per million tokens."""

    model_config = ConfigDict(extra="forbid")

    input_per_million: float = Field(ge=0)
    output_per_million: float = Field(ge=0)
    currency: str = "USD"


class FilterConfig(BaseModel):
    """The seed's quality filters, with the similarity made a real measure."""

    model_config = ConfigDict(extra="forbid")

    min_output_chars: int = Field(default=50, ge=0)
    # Character 2-gram cosine between the instruction and the answer; above this the answer is an echo.
    max_instruction_similarity: float = Field(default=0.8, gt=0, le=1)
    refusal_phrases: list[str] = Field(default_factory=lambda: list(DEFAULT_REFUSALS))
    dedupe: bool = True
    # An answer cut off by max_tokens is half an answer: keep it out of the dataset.
    reject_truncated: bool = True


class GenerateConfig(BaseModel):
    """Everything `distill generate` needs. Field docs double as the example config's comments."""

    model_config = ConfigDict(extra="forbid")

    input: Path
    id_field: str | None = "id"
    input_field: str = "input"
    output_dir: Path

    base_url: str = "http://127.0.0.1:8000/v1"
    model: str
    # The NAME of the environment variable holding the key; null for a local endpoint that needs none.
    api_key_env: str | None = "OPENAI_API_KEY"

    task: str = ""
    # "zh" (the seed's Chinese template), "en", or a path to a file with {task} and {input} placeholders.
    template: str = "zh"
    samples_per_input: int = Field(default=1, ge=1, le=1000)
    temperature_first: float = Field(default=0.3, ge=0, le=2)
    temperature_rest: float = Field(default=0.8, ge=0, le=2)
    max_tokens: int = Field(default=1024, ge=1)
    # Send `seed = sample_index` with each request; off by default because some providers reject it.
    send_seed: bool = False

    concurrency: int = Field(default=64, ge=1, le=100_000)
    rpm: float | None = Field(default=None, gt=0)
    tpm: float | None = Field(default=None, gt=0)
    learn_limits_from_headers: bool = True
    retries: int = Field(default=5, ge=0, le=100)
    request_timeout_s: float = Field(default=120.0, gt=0)

    shard_max_bytes: int = Field(default=128 * 1024 * 1024, ge=4096)
    prices: dict[str, Price] = Field(default_factory=dict)
    budget: float | None = Field(default=None, gt=0)
    filters: FilterConfig = Field(default_factory=FilterConfig)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http(s) URL such as https://api.openai.com/v1, got {value!r}")
        return value.rstrip("/")

    @field_validator("id_field", "input_field", "model")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty")
        return value

    @model_validator(mode="after")
    def _budget_needs_price(self) -> GenerateConfig:
        if self.budget is not None and self.model not in self.prices:
            raise ValueError(
                f"budget is set but prices has no entry for model {self.model!r}: "
                f"add prices.{self.model}.input_per_million and output_per_million"
            )
        return self

    @property
    def price(self) -> Price | None:
        return self.prices.get(self.model)


def load_generate_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> GenerateConfig:
    """YAML file (optional) plus flag overrides → a validated config; errors name file, line and key."""
    return load_config(GenerateConfig, path, overrides)


def is_loopback(base_url: str) -> bool:
    host = urlsplit(base_url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_api_key(config: GenerateConfig) -> str | None:
    """The key from the environment; a local endpoint may go without one, a remote one may not."""
    name = config.api_key_env
    key = os.environ.get(name) if name else None
    if key:
        return key
    if is_loopback(config.base_url):
        return None
    if not name:
        raise UserError(
            f"api_key_env is null but base_url {config.base_url} is not a local address: "
            "set api_key_env to the name of the environment variable that holds the key"
        )
    raise UserError(
        f"environment variable {name} is not set: export {name}=<your key> "
        f"(api_key_env names the variable that holds the key for {config.base_url})"
    )
