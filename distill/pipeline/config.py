"""`distill run`'s config: one YAML file for the whole distillation, validated up front.

The run-level keys say what the task is, which teacher and judge to use and which student to train. The
``generate``, ``train`` and ``evaluate`` sections are the engine's, the trainer's and the evaluator's own config
models, less the keys `distill run` fills in itself (input files, output directories, endpoints, students):
see ``pipeline.sections``. A typo or a bad value anywhere, nested keys included, fails when the file is loaded,
with its file and line, before any stage runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from distill.config_files import Lines, describe_validation_error
from distill.configs import local_or_bundled
from distill.endpoint import Endpoint
from distill.engine.config import GenerateConfig
from distill.engine.prompts import BUILTIN_TEMPLATES
from distill.errors import UserError
from distill.evaluator.config import EvalConfig
from distill.options import load_settings
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
    "metrics.answer_schema": "task.answer_schema sets it",
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
    train_seed: int = Field(default=1, description="seed of the training contracts")
    eval_seed: int = Field(default=1001, description="seed of the held-out contracts (must differ)")
    english_share: float = Field(default=0.25, ge=0, le=1, description="share of English contracts")

    @model_validator(mode="after")
    def _independent(self) -> ContractsConfig:
        if self.train_seed == self.eval_seed:
            raise ValueError("train_seed and eval_seed must differ: the held-out set must be independent")
        return self


# The name of a field of the task's JSONL rows.
FieldName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
_CONTRACT_KEYS = ("train", "eval", "train_seed", "eval_seed", "english_share")
_FILE_KEYS = ("inputs", "id_field", "input_field", "reference_field", "instruction", "instruction_file")
_FILE_KEYS += ("eval_set", "eval_split")


class TaskConfig(ContractsConfig):
    """What is distilled. ``kind: contracts`` is the bundled task (the keys above); ``kind: file`` is the
    user's own: inputs in a JSONL file, an instruction, a held-out set, optionally an answer schema. Relative
    paths are relative to the run config's own directory."""

    kind: Literal["contracts", "file"] = Field(
        default="contracts", description="contracts (bundled) or file (yours); inputs: given means file"
    )
    name: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$",
        description="names the training files and the report (default: contracts, or task)",
    )
    template: str | None = Field(
        default=None, description="the teacher's prompt: zh (the seed's), en, or a file (default: zh, or en)"
    )
    answer_schema: Path | dict[str, Any] | None = Field(
        default=None, description="JSON Schema of a structured answer: a file (JSON or YAML) or inline"
    )
    inputs: Path | None = Field(default=None, description="kind file: JSONL of the inputs, one object a line")
    id_field: FieldName | None = Field(default="id", description="kind file: null derives ids from the text")
    input_field: FieldName = Field(default="input", description="kind file: the field holding the input")
    reference_field: FieldName = Field(
        default="reference", description="kind file: the known answer, where a row has one"
    )
    student_instruction: str | None = Field(
        default=None,
        description="a shorter instruction the student is trained and served with (the teacher and the judge "
        "keep the task's): it learns the answer format from the teacher's answers, and every training sample "
        "and every request then costs fewer tokens",
    )
    instruction: str | None = Field(default=None, description="kind file: the task description")
    instruction_file: Path | None = Field(default=None, description="kind file: the instruction, from a file")
    eval_set: Path | None = Field(default=None, description="kind file: held-out JSONL, never trained on")
    eval_split: float | None = Field(
        default=None, gt=0, lt=1, description="kind file: or this share of the inputs, by a hash of the id"
    )

    @model_validator(mode="before")
    @classmethod
    def _kind_from_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and "kind" not in data and "inputs" in data:
            return {**data, "kind": "file"}
        return data

    @model_validator(mode="after")
    def _complete(self) -> TaskConfig:
        other = _FILE_KEYS if self.kind == "contracts" else _CONTRACT_KEYS
        stray = [key for key in other if key in self.model_fields_set]
        if stray:
            raise ValueError(f"{stray[0]} is not a key of kind: {self.kind}")
        if self.student_instruction is not None and not self.student_instruction.strip():
            raise ValueError("student_instruction is empty (leave it out to train on the task's instruction)")
        if self.kind == "contracts":
            return self
        if self.inputs is None:
            raise ValueError("kind: file needs inputs: the JSONL file of your inputs")
        if (self.instruction is None) == (self.instruction_file is None):
            raise ValueError("give the task's instruction: either instruction or instruction_file, not both")
        if self.instruction is not None and not self.instruction.strip():
            raise ValueError("instruction is empty")
        if (self.eval_set is None) == (self.eval_split is None):
            raise ValueError(
                "give the held-out set: eval_set (a JSONL file) or eval_split (a share of the inputs), not both"
            )
        return self

    @property
    def dataset_name(self) -> str:
        return self.name or ("contracts" if self.kind == "contracts" else "task")

    @property
    def prompt_template(self) -> str:
        return self.template or ("zh" if self.kind == "contracts" else "en")


def _beside(base: Path, value: Any) -> Any:
    """A relative file path in the task section, as a path beside the config file it was written in."""
    if isinstance(value, str | Path) and not Path(value).is_absolute():
        return base / value
    return value


def resolve_task_paths(task: TaskConfig, written_in: dict[str, Path]) -> TaskConfig:
    """The task with the relative file paths written in a config file resolved against that file's directory
    (``written_in``: task key -> directory); a path given as a flag stays relative to where the command runs."""
    update = {
        name: _beside(written_in[name], getattr(task, name)) for name in _TASK_FILES if name in written_in
    }
    if "template" in written_in and task.template is not None and task.template not in BUILTIN_TEMPLATES:
        update["template"] = str(_beside(written_in["template"], task.template))
    return task.model_copy(update=update)


_TASK_FILES = ("inputs", "instruction_file", "eval_set", "answer_schema")


class TeacherConfig(BaseModel):
    """Who answers: the local reference teacher, a local model under `vllm serve`, or any OpenAI-style API."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["reference", "vllm", "api"] = Field(
        default="reference",
        description="reference: the bundled stand-in API; vllm: a local model under vllm serve; api: endpoint",
    )
    # kind: api — the endpoint: URL, model, the NAME of the variable holding the key (never the key), limits.
    endpoint: Endpoint | None = None
    latency_ms: float = Field(default=400.0, ge=0, description="kind reference: mean time to the first token")
    latency_spread_ms: float = Field(
        default=150.0, ge=0, description="kind reference: spread of that latency"
    )
    stream_ms_per_token: float = Field(
        default=8.0, ge=0, description="kind reference: time per output token when streaming"
    )
    model: str | None = Field(
        default=None, description="kind vllm: the model to serve (alias, HF model directory or .gguf)"
    )
    max_model_len: int = Field(default=2048, ge=256, description="kind vllm: prompt + answer tokens at most")
    start_timeout_s: float = Field(
        default=600.0, gt=0, description="kind vllm: seconds vllm serve may take to start"
    )

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

    kind: Literal["reference", "teacher", "api"] = Field(
        default="reference",
        description="reference: the bundled rubric judge; teacher: the teacher's endpoint; api: endpoint",
    )
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

    output_dir: Path = Field(
        default=Path("runs/demo"), description="where every stage writes; rerun to resume"
    )
    task: TaskConfig = Field(default_factory=TaskConfig)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    student: str = Field(default="smollm2-135m-instruct", description="alias, HF model directory or .gguf")
    with_thinking: bool = Field(
        default=False, description="train on 【思考】…【答案】… instead of the answer only"
    )
    review: Literal["off", "required"] = Field(
        default="off",
        description="required: stop after generate until people review the records (`distill review`), then "
        "train on the approved ones (edited answers in place)",
    )
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

    def __init__(self, config: RunConfig, source: str, lines: Lines) -> None:
        # Files a task names are beside the config file that names them, wherever distill run is started.
        written_in = {
            key[1]: Path(at.file).parent for key, at in lines.items() if len(key) == 2 and key[0] == "task"
        }
        task = resolve_task_paths(config.task, written_in)
        self.config, self.source, self.lines = config.model_copy(update={"task": task}), source, lines

    def where(self, *key: str) -> str:
        """``file:line`` of a key (or of the nearest enclosing key written in a file)."""
        for cut in range(len(key), 0, -1):
            if key[:cut] in self.lines:
                return str(self.lines[key[:cut]])
        return self.source

    def section_error(self, exc: ValidationError, section: str) -> UserError:
        """A full engine/trainer/evaluator config built from a section failed: blame the section's keys."""
        return UserError(describe_validation_error(_Prefixed(exc, (section,)), self.source, self.lines))


def load_run_config(path: str | Path) -> LoadedRunConfig:
    """The run config in ``path`` (or the bundled config of that name), validated as `distill run` does."""
    loaded = load_settings(RunConfig, local_or_bundled(str(path)), {})
    return LoadedRunConfig(loaded.config, loaded.source, loaded.lines)
