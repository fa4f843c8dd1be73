"""`distill run`'s config: one YAML file for the whole distillation, validated up front.

The run-level keys say what the task is, which teacher and judge to use and which student to train. The
``generate``, ``train`` and ``evaluate`` sections are the engine's, the trainer's and the evaluator's own config
models, less the keys `distill run` fills in itself (input files, output directories, endpoints, students):
see ``pipeline.sections``. A typo or a bad value anywhere, nested keys included, fails when the file is loaded,
with its file and line, before any stage runs.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from distill.config_files import describe_validation_error, read_yaml
from distill.endpoint import Endpoint
from distill.engine.config import GenerateConfig
from distill.engine.prompts import BUILTIN_TEMPLATES
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
    "template": "task.template chooses it",
    "answer_schema": "task.answer_schema sets it",
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
    template: str = Field(default="zh", description="the teacher's prompt: zh (the seed's), en, or a file")


# The name of a field of the task's JSONL rows.
FieldName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class FileTask(BaseModel):
    """The user's own task: inputs in a JSONL file, an instruction, a held-out set, optionally an answer schema.

    Relative paths are relative to the run config's own directory.
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["file"] = "file"
    name: str = Field(
        default="task",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$",
        description="names the training files and the report",
    )
    inputs: Path = Field(description="JSONL file of the inputs to distil, one JSON object a line")
    id_field: FieldName | None = Field(default="id", description="null: ids derived from the input text")
    input_field: FieldName = "input"
    reference_field: FieldName = Field(
        default="reference", description="the known answer, where a row has one"
    )
    instruction: str | None = Field(
        default=None, description="the task description the teacher and student get"
    )
    instruction_file: Path | None = Field(default=None, description="the instruction, from a UTF-8 text file")
    template: str = Field(default="en", description="the teacher's prompt: en, zh (the seed's), or a file")
    eval_set: Path | None = Field(default=None, description="held-out JSONL file, never trained on")
    eval_split: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="or: this share of the inputs, chosen by a stable hash of the id",
    )
    answer_schema: Path | dict[str, Any] | None = Field(
        default=None, description="JSON Schema of a structured answer: a file (JSON or YAML) or inline"
    )

    @field_validator("inputs", "instruction_file", "eval_set", "answer_schema", "template")
    @classmethod
    def _beside_the_config(cls, value: Any, info: ValidationInfo) -> Any:
        base = (info.context or {}).get("config_dir")
        if base is None or value is None or isinstance(value, dict):
            return value
        if info.field_name == "template":
            return (
                value if value in BUILTIN_TEMPLATES or Path(value).is_absolute() else str(Path(base) / value)
            )
        return value if Path(value).is_absolute() else Path(base) / value

    @model_validator(mode="after")
    def _complete(self) -> FileTask:
        if (self.instruction is None) == (self.instruction_file is None):
            raise ValueError("give the task's instruction: either instruction or instruction_file, not both")
        if self.instruction is not None and not self.instruction.strip():
            raise ValueError("instruction is empty")
        if (self.eval_set is None) == (self.eval_split is None):
            raise ValueError(
                "give the held-out set: eval_set (a JSONL file) or eval_split (a share of the inputs), not both"
            )
        return self


def _task_kind(value: Any) -> str:
    if isinstance(value, dict):
        return value.get("kind") or ("file" if "inputs" in value else "contracts")
    return getattr(value, "kind", "contracts")


Task = Annotated[
    Annotated[ContractsTask, Tag("contracts")] | Annotated[FileTask, Tag("file")], Discriminator(_task_kind)
]


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
    task: Task = Field(default_factory=ContractsTask)
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


class _Untagged:
    """A ValidationError without the task kind pydantic puts in each location (``task.file.inputs``)."""

    def __init__(self, exc: ValidationError) -> None:
        self.exc = exc

    def errors(self) -> list[dict[str, Any]]:
        errors = []
        for error in self.exc.errors():
            loc = tuple(error["loc"])
            if loc[:1] == ("task",) and len(loc) > 1 and loc[1] in ("contracts", "file"):
                loc = loc[:1] + loc[2:]
            errors.append({**error, "loc": loc})
        return errors


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


def bundled_config(path: str | Path) -> Path | None:
    """The config shipped with distill at ``path`` (``configs/…`` or a path inside it), when no such file is
    here: `distill run configs/examples/job-postings.yaml` works from any directory, with or without a checkout."""
    relative = Path(path)
    if relative.exists() or relative.is_absolute():
        return None
    parts = relative.parts[1:] if relative.parts[:1] == ("configs",) else relative.parts
    if not parts:
        return None
    shipped = resources.files("distill.configs").joinpath(*parts)
    return Path(str(shipped)) if shipped.is_file() else None


def load_run_config(path: str | Path, *, output_dir: str | Path | None = None) -> LoadedRunConfig:
    path = bundled_config(path) or path
    data, lines = read_yaml(path)
    if output_dir is not None:
        data["output_dir"] = str(output_dir)
    _refuse_owned(data, str(path), lines)
    try:
        config = RunConfig.model_validate(data, context={"config_dir": Path(path).parent})
    except ValidationError as exc:
        raise UserError(describe_validation_error(_Untagged(exc), str(path), lines)) from None
    return LoadedRunConfig(config, str(path), lines)
