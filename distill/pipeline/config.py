"""`distill run`'s config: one YAML file for the whole distillation, validated up front.

The run-level keys say where things go, which teacher and judge to use and what to train; the ``generate``,
``train`` and ``evaluate`` sections are passed to the engine, the trainer and the evaluator as they are, on
top of what the pipeline fills in itself (input files, output directories, endpoints), and are validated by
those packages' own config models before anything runs, so a typo in a nested key fails in the first second
with its file and line, not an hour later.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from distill.config_files import describe_validation_error, read_yaml
from distill.endpoint import Endpoint
from distill.errors import UserError


class ContractsConfig(BaseModel):
    """The bundled task's data: synthetic contracts, drawn from two independent seeds."""

    model_config = ConfigDict(extra="forbid")

    train: int = Field(default=200, ge=1, le=1_000_000, description="distillation inputs sent to the teacher")
    eval: int = Field(default=60, ge=1, le=100_000, description="held-out contracts, never trained on")
    train_seed: int = 1
    eval_seed: int = 1001
    english_share: float = Field(default=0.25, ge=0, le=1)

    @model_validator(mode="after")
    def _independent(self) -> ContractsConfig:
        if self.train_seed == self.eval_seed:
            raise ValueError("train_seed and eval_seed must differ: the held-out set must be independent")
        return self


class TeacherConfig(BaseModel):
    """Who answers: the local reference teacher, a local model under `vllm serve`, or any OpenAI-style API."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["reference", "vllm", "api"] = "reference"
    # kind: api — the endpoint: URL, model, the NAME of the variable holding the key (never the key), limits.
    endpoint: Endpoint | None = None
    # kind: reference — how fast the stand-in API answers.
    latency_ms: float = Field(default=400.0, ge=0)
    latency_spread_ms: float = Field(default=150.0, ge=0)
    stream_ms_per_token: float = Field(default=8.0, ge=0)
    # kind: vllm — `model` is a student spec (alias, HF directory or .gguf) served by vLLM on this machine.
    model: str | None = None
    max_model_len: int = Field(default=2048, ge=256)
    start_timeout_s: float = Field(default=600.0, gt=0)

    @model_validator(mode="after")
    def _complete(self) -> TeacherConfig:
        if (self.kind == "api") != (self.endpoint is not None):
            raise ValueError(
                "kind: api needs endpoint: {base_url, model, api_key_env}, and only kind: api takes an endpoint"
            )
        if self.kind == "vllm" and not self.model:
            raise ValueError(
                "kind: vllm needs model: a student alias such as smollm2-135m-instruct, or a model dir"
            )
        if self.kind != "vllm" and self.model:
            raise ValueError("model is for kind: vllm; for kind: api the model goes in endpoint.model")
        return self


class JudgeConfig(BaseModel):
    """Who scores answers 0–10 against the reference: see docs/pipeline.md for why the demo's is a rubric."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["reference", "teacher", "api"] = "reference"
    endpoint: Endpoint | None = None

    @model_validator(mode="after")
    def _complete(self) -> JudgeConfig:
        if (self.kind == "api") != (self.endpoint is not None):
            raise ValueError(
                "kind: api needs endpoint: {base_url, model, api_key_env}, and only kind: api takes an endpoint"
            )
        return self


class RunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    output_dir: Path = Path("runs/demo")
    contracts: ContractsConfig = Field(default_factory=ContractsConfig)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    student: str = "smollm2-135m-instruct"
    # Train on the answer only (the seed's option 1) or on 【思考】…【答案】… (option 2).
    with_thinking: bool = False
    # required: stop after generation until people review the records (`distill review`), then train on the
    # approved ones only (edited answers in place).
    review: Literal["off", "required"] = "off"
    # Passed through to the engine / trainer / evaluator configs (see their docs for the keys).
    generate: dict[str, Any] = Field(default_factory=dict)
    train: dict[str, Any] = Field(default_factory=dict)
    evaluate: dict[str, Any] = Field(default_factory=dict)


class _Prefixed:
    """A ValidationError seen from the run config: each error's location starts with the section's key."""

    def __init__(self, exc: ValidationError, prefix: tuple) -> None:
        self.exc, self.prefix = exc, prefix

    def errors(self) -> list[dict[str, Any]]:
        return [{**error, "loc": (*self.prefix, *error["loc"])} for error in self.exc.errors()]


class LoadedRunConfig:
    """The validated config, where it came from, and the line of every key (for later section errors)."""

    def __init__(self, config: RunConfig, source: str, lines: dict[tuple, int]) -> None:
        self.config, self.source, self.lines = config, source, lines

    def section_error(self, exc: ValidationError, section: str) -> UserError:
        return UserError(describe_validation_error(_Prefixed(exc, (section,)), self.source, self.lines))


def load_run_config(path: str | Path, *, output_dir: str | Path | None = None) -> LoadedRunConfig:
    data, lines = read_yaml(path)
    if output_dir is not None:
        data["output_dir"] = str(output_dir)
    try:
        config = RunConfig.model_validate(data)
    except ValidationError as exc:
        raise UserError(describe_validation_error(exc, str(path), lines)) from None
    return LoadedRunConfig(config, str(path), lines)
