"""`distill eval`'s settings: one validated pydantic model, loaded from YAML with flags on top.

Sections: the eval set and task, the teacher and judge endpoints (OpenAI-compatible, keys only by the *name*
of their environment variable), the students (base model, optional LoRA adapter), how students generate,
the task metrics, the latency test, and the ROI inputs. ``configs/eval.yaml`` documents every key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from distill.evaluator.latency import LoadProfile
from distill.evaluator.load_metrics import LatencyTargets
from distill.evaluator.vllm_server import parallelism_problem
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from distill.config_files import load_config
from distill.endpoint import Endpoint, Price

NORMALISERS = ("nfkc", "casefold", "whitespace", "no_space", "strip_punct", "number", "date")
DEFAULT_NORMALISERS = ["nfkc", "casefold", "whitespace", "strip_punct"]


class CalledEndpoint(Endpoint):
    """An endpoint the evaluator sends paid calls to, with how it samples."""

    temperature: float = Field(default=0.0, ge=0, le=2, description="sampling temperature of every call")
    max_tokens: int = Field(default=1024, ge=1, description="max completion tokens per call")


class TeacherConfig(CalledEndpoint):
    template: str = Field(default="zh", description="the engine's prompt template: zh, en or a file")


class JudgeConfig(CalledEndpoint):
    max_tokens: int = Field(default=32, ge=1, description="max completion tokens per call")
    mode: Literal["score", "pairwise", "both"] = Field(
        default="score",
        description="score: 0-10 against the reference; pairwise: student vs teacher, asked in both orders",
    )
    # The seed grades the whole reply; grading the final answer keeps a student's 【思考】 part (or the
    # teacher's 【思考过程】) from swaying the score either way.
    answer_only: bool = Field(default=True, description="grade the final answer only, not the reasoning")


class StudentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    role: Literal["distilled", "original", "other"] = "other"
    model: str = Field(default="smollm2-135m-instruct", description="alias, HF model dir or .gguf file")
    adapter: Path | None = Field(default=None, description="LoRA adapter dir written by `distill train`")
    label: str | None = None
    task: str | None = Field(
        default=None,
        description="the task description this student was trained and is served with, when it is not the "
        "eval's own (a short instruction); null: the eval's task. The teacher and the judge keep the eval's",
    )


class VllmEngineSettings(BaseModel):
    """How a vLLM engine runs a student: offline in `distill eval`, and behind `vllm serve` for the latency sweep
    and `distill bench serve`."""

    model_config = ConfigDict(extra="forbid")

    lora: Literal["auto", "lora_request", "merged"] = Field(
        default="auto",
        description="how vLLM applies an adapter: LoRA requests on the base model, or a merged copy "
        "(auto: merged on the CPU build, whose LoRA ops are very slow; LoRA requests on a GPU)",
    )
    dtype: Literal["auto", "bfloat16", "float32", "float16"] = Field(
        default="auto",
        description="the student's weights and compute type (auto: bfloat16 on a GPU or a CPU with bf16 "
        "units, AVX512-BF16 or AMX; float32 elsewhere, where bf16 is emulated and many times slower)",
    )
    max_model_len: int = Field(default=2048, ge=64, description="prompt + answer tokens at most")
    kv_cache_mib: int | None = Field(
        default=1024,
        ge=16,
        description="vLLM's KV cache in RAM on the CPU build (null: vLLM sizes it, the right choice on a GPU)",
    )
    # One thread is far faster than two when other work shares the cores (spin-waiting).
    cpu_threads: int | None = Field(
        default=None, ge=1, description="CPU cores for vLLM (and torch for transformers); null: all"
    )
    # Several GPUs (the vllm package; the CPU build refuses both above 1). One evaluation uses their product.
    tensor_parallel_size: int = Field(
        default=1, ge=1, le=64, description="GPUs each vLLM engine splits the model over"
    )
    data_parallel_size: int = Field(
        default=1,
        ge=1,
        le=64,
        description="vLLM engines, each on its own GPUs and share of the prompts (offline) or requests (serve)",
    )

    @model_validator(mode="after")
    def _parallelism_fits(self) -> VllmEngineSettings:
        problem = self.parallelism_problem()
        if problem:
            raise ValueError(problem)
        return self

    def parallelism_problem(self) -> str | None:
        return parallelism_problem(self.tensor_parallel_size, self.data_parallel_size)


class GenerationConfig(VllmEngineSettings):
    backend: Literal["auto", "vllm", "transformers"] = Field(
        default="auto", description="student generation backend", json_schema_extra={"flag": "--backend"}
    )
    max_new_tokens: int = Field(default=512, ge=1, description="max tokens a student writes per answer")
    batch_size: int = Field(default=16, ge=1, description="transformers backend only")
    timeout_s: float = Field(default=3600.0, gt=0, description="seconds one student's generation may take")

    def parallelism_problem(self) -> str | None:
        if self.backend == "transformers" and (self.tensor_parallel_size > 1 or self.data_parallel_size > 1):
            return "tensor_parallel_size and data_parallel_size apply to the vLLM backend only"
        return super().parallelism_problem()


class LatencyConfig(LoadProfile):
    """The latency stage: a load sweep (see LoadProfile) of the teacher and each student with the same prompts."""

    enabled: bool = Field(
        default=True,
        description="run the latency/throughput load sweep",
        json_schema_extra={"flag": "--latency"},
    )
    concurrency: list[int] = Field(
        default_factory=lambda: [1, 2, 4, 8],
        min_length=1,
        description="requests in flight, one point per level (profile: concurrency)",
    )
    requests: int | None = Field(default=16, ge=1, description="requests per load point (null: duration_s)")
    warmup: int = Field(default=1, ge=0, description="unmeasured requests first (connection, caches)")
    max_tokens: int = Field(default=256, ge=1, description="max completion tokens per measured request")
    targets: LatencyTargets = Field(
        default_factory=lambda: LatencyTargets(ttft_ms=2000, tpot_ms=100),
        description="what a request must meet to count towards goodput; the knee is the highest load meeting them",
    )
    time_budget_s: float | None = Field(
        default=300, gt=0, description="per endpoint: points that would start after it are not measured"
    )
    # instruction: both sides get the same user message (the item's task instruction). generation_template: the
    # teacher gets the engine's chain-of-thought generation prompt instead, as during `distill generate`.
    teacher_prompt: Literal["instruction", "generation_template"] = Field(
        default="instruction",
        description="instruction: the teacher gets the student's message; generation_template: the CoT prompt "
        "of `distill generate`",
    )
    measure_teacher: bool = Field(
        default=True, description="measure the teacher too (its requests are paid calls)"
    )
    students: list[str] | None = Field(default=None, description="student names to measure; null: all")
    # Student side: start `vllm serve` of the base model with the adapters (null), or use this endpoint.
    student_base_url: str | None = Field(
        default=None,
        description="measure this running server (served names = student names); null: vllm serve",
    )
    student_dtype: Literal["auto", "bfloat16", "float32", "float16"] = Field(
        default="auto", description="dtype of the student under vllm serve (auto: as generation.dtype's auto)"
    )
    server_start_timeout_s: float = Field(
        default=600.0, gt=0, description="seconds vllm serve may take to come up"
    )


class MetricsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # A structured answer's JSON Schema (a file, or inline): compliance = valid JSON satisfying it, the fields
    # are its properties, each normalised by its type. Without one: the fields below, or exact match for text.
    answer_schema: Path | dict[str, Any] | None = None
    fields: list[str] | None = Field(
        default=None,
        description="required fields of a structured answer; null: the schema's properties, or the references' keys",
    )
    normalisers: list[str] = Field(
        default_factory=lambda: list(DEFAULT_NORMALISERS),
        description=f"applied to both sides before comparing; from {', '.join(NORMALISERS)}",
    )
    field_normalisers: dict[str, list[str]] = Field(default_factory=dict)

    @field_validator("normalisers")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        _check_normalisers(value)
        return value

    @field_validator("field_normalisers")
    @classmethod
    def _known_per_field(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for names in value.values():
            _check_normalisers(names)
        return value


def _check_normalisers(names: list[str]) -> None:
    unknown = [name for name in names if name not in NORMALISERS]
    if unknown:
        raise ValueError(f"unknown normaliser {unknown[0]!r}; known: {', '.join(NORMALISERS)}")


class RoiConfig(BaseModel):
    """The seed's ROI inputs. Costs per call are given, or derived (prices × measured tokens, or hardware)."""

    model_config = ConfigDict(extra="forbid")

    currency: str = Field(default="CNY", description="the currency of every cost below")
    calls_per_month: float = Field(default=1_000_000, ge=0, description="calls the task serves a month")
    teacher_cost_per_call: float | None = Field(
        default=0.02, ge=0, description="null: teacher.price × measured tokens"
    )
    student_cost_per_call: float | None = Field(
        default=0.001, ge=0, description="null: from student_price or student_cost_per_hour"
    )
    # Used only when the matching cost per call is null.
    student_price: Price | None = None
    student_cost_per_hour: float | None = Field(
        default=None, ge=0, description="server cost, with measured req/s"
    )
    # The investment that break-even pays back: the teacher answers bought for the training data, the
    # training, the engineering. Break-even months = (data + training + engineering) / monthly saving.
    data_calls: int = Field(default=0, ge=0, description="teacher answers bought to make the training data")
    data_cost: float | None = Field(
        default=None,
        ge=0,
        description="what they cost, measured; null: data_calls × the teacher's cost per call",
    )
    training_cost: float = Field(default=0.0, ge=0, description="compute for training, in `currency`")
    engineering_cost: float = Field(
        default=0.0, ge=0, description="people's time to build and ship the student"
    )
    win_margin: float = Field(
        default=0.1,
        ge=0,
        description="per item, a judge score more than this above the teacher's is a win, below a loss",
    )
    min_retention: float = Field(
        default=0.90, ge=0, description="recommend the student when its retention is above this"
    )
    max_break_even_months: float = Field(
        default=3.0, ge=0, description="... and the investment pays back in fewer months than this"
    )
    retention_from: Literal["judge", "f1"] = Field(
        default="judge", description="retention = the student's over the teacher's: judge score or field F1"
    )


class EvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    eval_set: Path = Field(description="JSONL with id, input and reference per line")
    output_dir: Path = Field(description="where report.md, report.json, plots and caches go")
    task: str = Field(default="", description="the task description the teacher and student were given")
    id_field: str = Field(default="id", description="eval-set field holding the item's id")
    input_field: str = Field(default="input", description="eval-set field holding the input text")
    reference_field: str = Field(
        default="reference", description="eval-set field holding the reference answer"
    )
    limit: int | None = Field(default=None, ge=1, description="evaluate the first N items only")
    teacher: TeacherConfig | None = None
    judge: JudgeConfig | None = None
    students: list[StudentConfig] = Field(min_length=1)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    latency: LatencyConfig = Field(default_factory=LatencyConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    roi: RoiConfig = Field(default_factory=RoiConfig)
    plots: bool = Field(default=True, description="draw the PNG plots")

    @model_validator(mode="after")
    def _distinct_students(self) -> EvalConfig:
        names = [student.name for student in self.students]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"student names must be distinct: {', '.join(duplicates)} appears twice")
        unknown = sorted(set(self.latency.students or ()) - set(names))
        if unknown:
            raise ValueError(f"latency.students names no configured student: {', '.join(unknown)}")
        if self.judge is not None and self.judge.mode != "score" and self.teacher is None:
            raise ValueError("judge.mode pairwise/both compares students with the teacher: configure teacher")
        return self


def load_eval_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> EvalConfig:
    """YAML file (optional) plus flag overrides → a validated config; errors name file, line and key."""
    return load_config(EvalConfig, path, overrides)
