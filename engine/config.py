"""`distill generate`'s settings: one validated pydantic model, loaded from YAML with flags on top.

Everything a run needs is here so a run directory can be reproduced from its config; the API key is not:
only the *name* of the environment variable that holds it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from distill.engine.batch.settings import BatchSettings
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

    min_output_chars: int = Field(default=50, ge=0, description="reject answers shorter than this")
    max_instruction_similarity: float = Field(
        default=0.8,
        gt=0,
        le=1,
        description="reject an answer whose character 2-gram cosine with the instruction is above this (an echo)",
    )
    refusal_phrases: list[str] = Field(
        default_factory=lambda: list(DEFAULT_REFUSALS), description="reject answers with these refusals"
    )
    dedupe: bool = Field(default=True, description="reject an answer equal to one already accepted")
    reject_truncated: bool = Field(
        default=True, description="reject answers cut off by max_tokens (half an answer)"
    )
    near_dedupe: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="reject an answer whose character 3-gram Jaccard similarity with an answer accepted for "
        "another input reaches this (MinHash/LSH; e.g. 0.8; needs the dedupe extra: datasketch)",
    )
    agreement: bool = Field(
        default=False,
        description="self-consistency, with samples_per_input > 1: keep each input's majority answer (compared "
        "normalised, JSON field by field) and reject the others as `disagreement`",
    )
    min_agreement: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="with agreement: an input whose majority holds no more than this share of its answers is "
        "flagged and all its answers rejected as `low_agreement`",
    )


class ExportConfig(BaseModel):
    """What `distill export` turns into training files, and how."""

    model_config = ConfigDict(extra="forbid")

    run_dir: Path = Field(description="a `distill generate` output directory")
    out_dir: Path = Field(description="where the training files and dataset_info.json go")
    format: Literal["alpaca", "sharegpt", "both"] = Field(default="both", description="training file format")
    with_thinking: bool = Field(
        default=False, description="train on full_output (【思考】…【答案】…) instead of the answer only"
    )
    name: str | None = Field(default=None, description="dataset name (default: the run directory's name)")
    review: Literal["approved", "exclude-rejected"] | None = Field(
        default=None,
        description="apply `distill review` decisions: only approved records, or all but rejected ones "
        "(edited answers replace the originals) (default: every accepted record)",
    )


class GenerateConfig(BaseModel):
    """Everything `distill generate` needs; each field's description is its flag's help."""

    model_config = ConfigDict(extra="forbid")

    input: Path = Field(description="JSONL file, one object per line with an id and an input text")
    id_field: str | None = Field(
        default="id", description="input field holding the row id (null: derived from the text)"
    )
    input_field: str = Field(default="input", description="input field holding the text")
    output_dir: Path = Field(description="run directory: shards, run.json, summary.json (resumable)")

    # Its flags drop the section: --base-url, --model, --api-key-env, --concurrency, --rpm, --tpm, ...
    teacher: Endpoint = Field(
        description="where the answers come from: URL, model, key variable, limits, timeouts, price",
        json_schema_extra={"flag_prefix": ""},
    )
    pool: list[Endpoint] = Field(
        default_factory=list,
        description="more endpoints sharing the work with the teacher (replicas, keys, providers of the same "
        "model), each with its own limits, weight and key; set in the config file",
    )

    task: str = Field(
        default="", description="task description put into the prompt and the student's instruction"
    )
    template: str = Field(
        default="zh", description="prompt template: zh (the seed's), en, or a file with {task} and {input}"
    )
    samples_per_input: int = Field(default=1, ge=1, le=1000, description="answers per input")
    temperature_first: float = Field(default=0.3, ge=0, le=2, description="temperature of sample 0")
    temperature_rest: float = Field(default=0.8, ge=0, le=2, description="temperature of later samples")
    max_tokens: int = Field(default=1024, ge=1, description="max completion tokens per answer")
    send_seed: bool = Field(
        default=False, description="send seed = sample_index with each request (some providers reject it)"
    )

    mode: Literal["online", "batch"] = Field(
        default="online",
        description="online: every request over /chat/completions; batch: the provider's batch API at its "
        "batch price (its settings: the batch section, with wait and fallback)",
    )
    batch: BatchSettings = Field(
        default_factory=BatchSettings,
        description="provider batch mode: file limits, tracking, resends, price",
    )

    shard_max_bytes: int = Field(default=128 * 1024 * 1024, ge=4096, description="rotate shards at this size")
    budget: float | None = Field(
        default=None,
        gt=0,
        description="stop admitting requests once this much is spent (needs teacher.price)",
    )
    filters: FilterConfig = Field(default_factory=FilterConfig)
    target_accepted: int | None = Field(
        default=None,
        ge=1,
        description="stop once this many records passed every filter (in input order; the requests in flight "
        "when it is reached still finish and are kept)",
    )
    max_candidates: int | None = Field(
        default=None,
        ge=1,
        description="send at most this many requests in all, across resumes (a cap on what target_accepted may cost)",
    )
    answer_schema: dict[str, Any] | None = Field(
        default=None,
        description="a JSON schema the final answer must follow (inline, or the path of a .json file): an "
        "answer that is not JSON or does not fit is rejected as `schema`",
    )
    structured_output: bool = Field(
        default=False,
        description="send answer_schema as response_format json_schema (OpenAI, vLLM): the server keeps to it, "
        "and the whole reply is the answer (thinking only from a reasoning field)",
    )

    @field_validator("answer_schema", mode="before")
    @classmethod
    def _load_schema(cls, value: Any) -> Any:
        if isinstance(value, str | Path):
            try:
                value = json.loads(Path(value).read_text(encoding="utf-8"))
            except OSError as exc:
                raise ValueError(f"cannot read the schema file {value}: {exc.strerror}") from None
            except ValueError as exc:
                raise ValueError(f"the schema file {value} is not JSON: {exc}") from None
        if isinstance(value, dict):
            import jsonschema  # ~60 ms to import: only configs with an answer schema pay for it

            try:
                jsonschema.validators.validator_for(value).check_schema(value)
            except jsonschema.SchemaError as exc:
                raise ValueError(f"not a valid JSON schema: {exc.message}") from None
        return value

    @field_validator("id_field", "input_field")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty")
        return value

    @model_validator(mode="after")
    def _schema_to_send(self) -> GenerateConfig:
        if self.structured_output and self.answer_schema is None:
            raise ValueError("structured_output needs answer_schema: the schema to send")
        return self

    @model_validator(mode="after")
    def _one_price(self) -> GenerateConfig:
        """Pool endpoints without a price take the teacher's; the budget counts one price for all."""
        for index, endpoint in enumerate(self.pool):
            if endpoint.price is None:
                self.pool[index] = endpoint.model_copy(update={"price": self.teacher.price})
            elif endpoint.price != self.teacher.price:
                raise ValueError(
                    f"pool.{index}.price differs from teacher.price: endpoints of one run share one price "
                    "(the budget and the summary count spend with it)"
                )
        return self

    @property
    def endpoints(self) -> list[Endpoint]:
        """The teacher, then the pool: every endpoint this run sends to."""
        return [self.teacher, *self.pool]

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
