"""`distill run`'s config: one YAML file for the whole distillation, validated up front.

The run-level keys say what the task is, which teacher and judge to use and which student to train. The
``generate``, ``train`` and ``evaluate`` sections are the engine's, the trainer's and the evaluator's own config
models, less the keys `distill run` fills in itself (input files, output directories, endpoints, students):
see ``pipeline.sections``. A typo or a bad value anywhere, nested keys included, fails when the file is loaded,
with its file and line, before any stage runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from distill.config_files import describe_validation_error, read_yaml
from distill.endpoint import Endpoint
from distill.engine.config import GenerateConfig
from distill.errors import UserError
from distill.evaluator.config import EvalConfig
from distill.pipeline.sections import section_model
from distill.trainer.config import TrainConfig

# What `distill run` decides in each section, and why: a section that sets one of these is refused.
GENERATE_OWNED = {
    "input": "the data stage writes the inputs",
    "id_field": "the data stage writes the inputs",
    "input_field": "the data stage writes the inputs",
    "output_dir": "it is under output_dir",
    "task": "task: holds the instruction",
    # generate.teacher holds the teacher's limits, timeouts and price; the run's teacher: says who it is.
    "teacher.base_url": "teacher: chooses the endpoint",
    "teacher.model": "teacher: chooses the endpoint",
    "teacher.api_key_env": "teacher: chooses the endpoint",
    "teacher.label": "teacher: chooses the endpoint",
}
TRAIN_OWNED = {
    "data": "the export stage writes the training set",
    "output_dir": "it is under output_dir",
    "base_model": "student: names it",
    "format": "with_thinking: chooses it",
}
EVALUATE_OWNED = {
    "eval_set": "the data stage writes the held-out set",
    "output_dir": "it is under output_dir",
    "task": "task: holds the instruction",
    "id_field": "the data stage writes the held-out set",
    "input_field": "the data stage writes the held-out set",
    "reference_field": "the data stage writes the held-out set",
    "students": "student: names the model; the run compares it before and after training",
    "teacher.base_url": "teacher: chooses the endpoint",
    "teacher.model": "teacher: chooses the endpoint",
    "teacher.api_key_env": "teacher: chooses the endpoint",
    "judge.base_url": "judge: chooses the endpoint",
    "judge.model": "judge: chooses the endpoint",
    "judge.api_key_env": "judge: chooses the endpoint",
    "roi.data_calls": "the generate stage counts the teacher answers bought",
    "roi.data_cost": "the generate stage measures what they cost",
}
OWNED = {"generate": GENERATE_OWNED, "train": TRAIN_OWNED, "evaluate": EVALUATE_OWNED}

GenerateSection = section_model(GenerateConfig, GENERATE_OWNED, name="GenerateSection")
TrainSection = section_model(TrainConfig, TRAIN_OWNED, name="TrainSection")
EvaluateSection = section_model(EvalConfig, EVALUATE_OWNED, name="EvaluateSection")


class ContractsConfig(BaseModel):
    """The bundled task's data: synthetic contracts with known answers, drawn from two independent seeds."""

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


class ContractsTask(ContractsConfig):
    """The bundled task as a run's task."""

    kind: Literal["contracts"] = "contracts"


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
    task: ContractsTask = Field(default_factory=ContractsTask)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    student: str = Field(default="smollm2-135m-instruct", description="alias, HF model directory or .gguf")
    # Train on the answer only (the seed's option 1) or on 【思考】…【答案】… (option 2).
    with_thinking: bool = False
    # required: stop after generation until people review the records (`distill review`), then train on the
    # approved ones only (edited answers in place).
    review: Literal["off", "required"] = "off"
    generate: GenerateSection = Field(default_factory=GenerateSection)  # type: ignore[valid-type]
    train: TrainSection = Field(default_factory=TrainSection)  # type: ignore[valid-type]
    evaluate: EvaluateSection = Field(default_factory=EvaluateSection)  # type: ignore[valid-type]


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

    def where(self, *key: str) -> str:
        """``file:line`` of a key (or of the nearest enclosing key that has a line)."""
        for cut in range(len(key), 0, -1):
            if key[:cut] in self.lines:
                return f"{self.source}:{self.lines[key[:cut]]}"
        return self.source

    def section_error(self, exc: ValidationError, section: str) -> UserError:
        """A full engine/trainer/evaluator config built from a section failed: blame the section's keys."""
        return UserError(describe_validation_error(_Prefixed(exc, (section,)), self.source, self.lines))


def _refuse_owned(data: dict[str, Any], source: str, lines: dict[tuple, int]) -> None:
    for section, owned in OWNED.items():
        values = data.get(section)
        for dotted, why in owned.items():
            path = dotted.split(".")
            value: Any = values
            for part in path:
                value = value.get(part, _ABSENT) if isinstance(value, dict) else _ABSENT
            if value is not _ABSENT:
                key = (section, *path)
                raise UserError(
                    f"{source}:{lines.get(key, '?')}: {'.'.join(key)}: set by `distill run` itself ({why}); "
                    "remove it from this section"
                )


_ABSENT = object()


def load_run_config(path: str | Path, *, output_dir: str | Path | None = None) -> LoadedRunConfig:
    data, lines = read_yaml(path)
    if output_dir is not None:
        data["output_dir"] = str(output_dir)
    _refuse_owned(data, str(path), lines)
    try:
        config = RunConfig.model_validate(data)
    except ValidationError as exc:
        raise UserError(describe_validation_error(exc, str(path), lines)) from None
    return LoadedRunConfig(config, str(path), lines)
