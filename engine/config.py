"""`distill generate`'s settings: one validated pydantic model, loaded from YAML with flags on top.

Everything a run needs is here so a run directory can be reproduced from its config; the API key is not:
only the *name* of the environment variable that holds it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from distill.config_files import load_config
from distill.endpoint import Endpoint

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

    # Where the answers come from: URL, model, key variable, limits, timeouts, price.
    teacher: Endpoint

    task: str = ""
    # "zh" (the seed's Chinese template), "en", or a path to a file with {task} and {input} placeholders.
    template: str = "zh"
    samples_per_input: int = Field(default=1, ge=1, le=1000)
    temperature_first: float = Field(default=0.3, ge=0, le=2)
    temperature_rest: float = Field(default=0.8, ge=0, le=2)
    max_tokens: int = Field(default=1024, ge=1)
    # Send `seed = sample_index` with each request; off by default because some providers reject it.
    send_seed: bool = False

    shard_max_bytes: int = Field(default=128 * 1024 * 1024, ge=4096)
    budget: float | None = Field(default=None, gt=0)
    filters: FilterConfig = Field(default_factory=FilterConfig)

    @field_validator("id_field", "input_field")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty")
        return value

    @model_validator(mode="after")
    def _budget_needs_price(self) -> GenerateConfig:
        if self.budget is not None and self.teacher.price is None:
            raise ValueError(
                "budget is set but the teacher has no price: add teacher.price.input_per_million and "
                "output_per_million"
            )
        return self


def load_generate_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> GenerateConfig:
    """YAML file (optional) plus flag overrides → a validated config; errors name file, line and key."""
    return load_config(GenerateConfig, path, overrides)
