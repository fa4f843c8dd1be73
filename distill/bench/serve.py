"""`distill bench serve`: the student and the teacher under the same load, with the same prompts, side by side.

Prompts come from an eval set or a run's inputs (the task instruction for each row, the message the student was
trained on); both sides get exactly these messages, streamed through the engine's client. The student is served
by the same ``vllm serve`` launch `distill eval` uses (a merged copy or LoRA requests, on this machine's CPU or
its GPUs), or is any running OpenAI-compatible URL; the teacher is an API URL, or the bundled reference teacher
started for the run. Each side is swept over the load points (concurrency levels, or Poisson request rates),
lowest first, after an unmeasured warm-up.

Writes ``serve-bench.json`` (every point), ``serve-bench.md`` (the table), ``latency.png`` (latency percentiles
against throughput, both sides on the same axes) and ``goodput.png`` (goodput against load) to ``output_dir``.
``--compare-vllm`` also runs vLLM's own serving benchmark on the same student server with the same prompts and
load, and tables the two tools' medians side by side.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from distill.bench.serve_vllm import compare_with_vllm, comparison_table
from distill.endpoint import Endpoint, Price
from distill.engine.inputs import iter_inputs
from distill.engine.prompts import build_instruction
from distill.engine.types import ChatRequest
from distill.evaluator.config import StudentConfig, VllmEngineSettings
from distill.evaluator.evalset import load_eval_set
from distill.evaluator.latency import LoadProfile
from distill.evaluator.latency_stage import instruction_requests
from distill.evaluator.load_metrics import LatencyTargets
from distill.evaluator.serving import place_students, serve_placements
from distill.evaluator.serving_bench import ServingSide, headline_label, markdown_table, run_sweep
from distill.evaluator.students import resolve_students
from distill.trainer.student import resolve_student

SERVED_STUDENT = "student"
EPILOG = """\
examples:
  # a distilled student (vllm serve here) against the bundled reference teacher, the default concurrency sweep
  distill bench serve --eval-set runs/demo/data/eval.jsonl --student-adapter runs/demo/adapter \\
      --reference-truth runs/demo/data/truth.jsonl --student-cost-per-hour 0.10 \\
      --reference-price.input-per-million 2.5 --reference-price.output-per-million 10
  # any two running OpenAI-compatible servers, Poisson arrivals at 0.5-8 req/s, 60 s per point
  distill bench serve --inputs inputs.jsonl --student-base-url http://gpu-box:8000/v1 --student-served-model s \\
      --teacher-base-url https://api.openai.com/v1 --teacher-model gpt-4o --profile rate --requests null \\
      --duration-s 60
  # the same student server measured by vLLM's own benchmark too, side by side
  distill bench serve --eval-set runs/demo/data/eval.jsonl --compare-vllm --student-ignore-eos
"""


class StudentSide(BaseModel):
    """The student: started here with `vllm serve` (model + adapter), or reached at a running URL."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(
        default="smollm2-135m-instruct", description="student base model: alias, HF dir or .gguf"
    )
    adapter: Path | None = Field(default=None, description="LoRA adapter dir written by `distill train`")
    base_url: str | None = Field(
        default=None, description="a running OpenAI-compatible student server instead of starting vllm serve"
    )
    served_model: str = Field(default=SERVED_STUDENT, description="model name at --student-base-url")
    cost_per_hour: float | None = Field(
        default=None, ge=0, description="the student machine's price per hour (cost per 1,000 requests)"
    )
    ignore_eos: bool = Field(
        default=False,
        description="make the student write exactly max_tokens (a vLLM sampling option; fixed-length load)",
    )
    start_timeout_s: float = Field(default=600.0, gt=0, description="seconds for vllm serve to come up")


class ReferenceTeacher(BaseModel):
    """The bundled reference teacher (answers the contract task from its ground truth, with API-like latency)."""

    model_config = ConfigDict(extra="forbid")

    truth: Path = Field(description="truth.jsonl written by `distill make-contracts` (a demo run's data/)")
    latency_ms: float = Field(default=400.0, ge=0, description="mean time to first token")
    latency_spread_ms: float = Field(default=150.0, ge=0, description="lognormal spread of it")
    stream_ms_per_token: float = Field(default=8.0, ge=0, description="time per output token")
    price: Price | None = Field(
        default=None, description="the API price it stands in for, per million tokens"
    )


class ServeBenchConfig(BaseModel):
    """``distill bench serve``'s settings."""

    model_config = ConfigDict(extra="forbid")

    eval_set: Path | None = Field(
        default=None, description="prompts from this eval set (JSONL: id, input, ...)"
    )
    inputs: Path | None = Field(
        default=None, description="or from a run's inputs (JSONL, `distill generate`'s)"
    )
    input_field: str = Field(default="input", description="the input text's field in those rows")
    id_field: str = Field(default="id", description="the id's field in those rows")
    task: str = Field(default="", description="the task description the student was trained with")
    prompts: int = Field(
        default=64, ge=1, description="distinct prompts (the first rows), cycled by every point"
    )
    max_tokens: int = Field(default=256, ge=1, description="max_tokens of every request, both sides")
    student: StudentSide = Field(default_factory=StudentSide, json_schema_extra={"flag_prefix": "student-"})
    serving: VllmEngineSettings = Field(
        default_factory=VllmEngineSettings,
        description="how vllm serve runs the student (lora, max_model_len, kv_cache_mib, cpu_threads, "
        "tensor_parallel_size, data_parallel_size)",
    )
    teacher: Endpoint | None = Field(
        default=None,
        description="the teacher API (with price for its cost per 1,000 requests)",
        json_schema_extra={"flag_prefix": "teacher-"},
    )
    reference_teacher: ReferenceTeacher | None = Field(
        default=None,
        description="or start the bundled reference teacher",
        json_schema_extra={"flag_prefix": "reference-"},
    )
    load: LoadProfile = Field(default_factory=LoadProfile, json_schema_extra={"flag_prefix": ""})
    targets: LatencyTargets = Field(
        default_factory=lambda: LatencyTargets(ttft_ms=2000, tpot_ms=100),
        json_schema_extra={"flag_prefix": ""},
    )
    time_budget_s: float | None = Field(
        default=None, gt=0, description="per side: load points that would start after it are not measured"
    )
    currency: str = Field(default="USD", description="currency of the prices given")
    compare_vllm: bool = Field(
        default=False,
        description="also run vLLM's serving benchmark on the student server, same prompts and load",
    )
    output_dir: Path = Field(default=Path("serve-bench"), description="where the JSON, table and plots go")

    @model_validator(mode="after")
    def _one_source_one_teacher(self) -> ServeBenchConfig:
        if (self.eval_set is None) == (self.inputs is None):
            raise ValueError("give the prompts with eval_set or with inputs (exactly one)")
        if self.teacher is not None and self.reference_teacher is not None:
            raise ValueError("give teacher (an API) or reference_teacher, not both")
        if self.compare_vllm and self.load.profile != "concurrency":
            raise ValueError("compare_vllm compares concurrency points: use profile: concurrency")
        return self


def load_prompts(config: ServeBenchConfig) -> list[tuple[str, str]]:
    """(id, instruction) of the first ``config.prompts`` rows: the message both sides are sent."""
    if config.eval_set is not None:
        items = load_eval_set(
            config.eval_set,
            config.task,
            id_field=config.id_field,
            input_field=config.input_field,
            limit=config.prompts,
        )
        return [(item.id, item.instruction) for item in items]
    rows = []
    for row in iter_inputs(config.inputs, config.id_field, config.input_field):
        rows.append((row.id, build_instruction(config.task, row.text)))
        if len(rows) == config.prompts:
            break
    return rows


def requests_for(
    prompts: list[tuple[str, str]], model: str, max_tokens: int, extra: dict | None
) -> list[ChatRequest]:
    """The prompts as the evaluator's latency test sends them (one greedy user message each)."""
    return instruction_requests([text for _, text in prompts], model, max_tokens, extra)


@contextlib.contextmanager
def student_endpoint(
    config: ServeBenchConfig, ids: set[str], say
) -> Iterator[tuple[Endpoint, str | None, str]]:
    """The student's endpoint (started here unless a URL is given), its model dir (None for a URL) and label."""
    side = config.student
    if side.base_url is not None:
        yield Endpoint(base_url=side.base_url, model=side.served_model, api_key_env=None), None, side.base_url
        return
    students, _ = resolve_students(
        [StudentConfig(name=SERVED_STUDENT, model=side.model, adapter=side.adapter)], ids
    )
    student = students[0]
    [(model_dir, placements)] = place_students(students, config.serving.lora).items()
    how = (
        "LoRA request" if placements[0].lora_dir else ("merged copy" if student.adapter_dir else "base model")
    )
    say(f"starting vllm serve of {student.label} ({how}) ...")
    started = time.perf_counter()
    with serve_placements(
        model_dir,
        placements,
        config.serving,
        dtype=config.serving.dtype,
        log_dir=config.output_dir / "logs",
        timeout_s=side.start_timeout_s,
    ) as (url, models):
        say(f"vllm serve ready after {time.perf_counter() - started:.0f} s")
        endpoint = Endpoint(
            base_url=url, model=models[SERVED_STUDENT], api_key_env=None, request_timeout_s=600
        )
        yield endpoint, model_dir, f"{student.label} ({how}, vllm serve)"


@contextlib.contextmanager
def teacher_endpoint(config: ServeBenchConfig, say) -> Iterator[Endpoint | None]:
    if config.teacher is not None:
        yield config.teacher
        return
    if config.reference_teacher is None:
        yield None
        return
    from distill.pipeline.servers import reference_teacher_server

    reference = config.reference_teacher
    say("starting the reference teacher ...")
    with reference_teacher_server(
        {"truth": reference.truth},
        config.output_dir / "logs" / "reference-teacher.log",
        latency_ms=reference.latency_ms,
        latency_spread_ms=reference.latency_spread_ms,
        stream_ms_per_token=reference.stream_ms_per_token,
    ) as endpoint:
        yield endpoint.model_copy(update={"price": reference.price})


def run_bench(config: ServeBenchConfig, say=print) -> dict[str, Any]:
    """Sweep both sides, write the outputs, return everything measured.

    The bench's own share of the wall time is everything but the sweeps, the servers' start and the vLLM
    comparison: reading prompts, checking the student, summarising, writing the table, JSON and plots.
    """
    started = time.perf_counter()
    prompts = load_prompts(config)
    config.output_dir.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    comparison = None
    waited = {"servers_start_s": 0.0, "vllm_comparison_s": 0.0}
    with contextlib.ExitStack() as stack:
        starting = time.perf_counter()
        teacher = stack.enter_context(teacher_endpoint(config, say))
        student, model_dir, label = stack.enter_context(
            student_endpoint(config, {i for i, _ in prompts}, say)
        )
        waited["servers_start_s"] = time.perf_counter() - starting
        extra = {"ignore_eos": True} if config.student.ignore_eos else None
        side = ServingSide(
            "student",
            label,
            student,
            requests_for(prompts, student.model, config.max_tokens, extra),
            cost_per_hour=config.student.cost_per_hour,
        )
        results.append(
            run_sweep(side, config.load, config.targets, budget_s=config.time_budget_s, samples=True, say=say)
        )
        if teacher is not None:
            side = ServingSide(
                "teacher",
                teacher.name,
                teacher,
                requests_for(prompts, teacher.model, config.max_tokens, None),
                price=teacher.price,
            )
            results.append(
                run_sweep(
                    side, config.load, config.targets, budget_s=config.time_budget_s, samples=True, say=say
                )
            )
        if config.compare_vllm:
            comparing = time.perf_counter()
            comparison = compare_with_vllm(
                student,
                model_dir or resolve_student(config.student.model),
                prompts,
                requests_for(prompts, student.model, config.max_tokens, {"ignore_eos": True}),
                config.load,
                config.max_tokens,
                config.output_dir / "vllm-bench",
                say,
            )
            waited["vllm_comparison_s"] = time.perf_counter() - comparing
    report = {
        "prompts": {
            "count": len(prompts),
            "source": str(config.eval_set or config.inputs),
            "max_tokens": config.max_tokens,
            "same_messages_both_sides": True,
        },
        "targets": config.targets.model_dump(),
        "load": config.load.model_dump(),
        "sides": results,
        "vllm_comparison": comparison,
        "config": config.model_dump(mode="json"),
    }
    write_outputs(report, config)
    wall = time.perf_counter() - started
    sweeps = sum(result["wall_s"] for result in results)
    client_cpu = sum(result["client_cpu_s"] for result in results)
    own = wall - sweeps - sum(waited.values())
    report["overhead"] = {
        "wall_s": wall,
        "sweep_wall_s": sweeps,
        **waited,
        "own_s": own,
        "own_fraction": own / wall,
        "client_cpu_s": client_cpu,
        "client_cpu_fraction_of_sweeps": client_cpu / sweeps if sweeps else None,
    }
    write_outputs(report, config, plots=False)
    return report


def write_outputs(report: dict[str, Any], config: ServeBenchConfig, *, plots: bool = True) -> None:
    from distill.evaluator.plots import goodput_plot, serving_curve_plot

    out = config.output_dir
    (out / "serve-bench.json").write_text(json.dumps(report, indent=1, ensure_ascii=False), encoding="utf-8")
    (out / "serve-bench.md").write_text(render_markdown(report, config), encoding="utf-8")
    if plots:
        serving_curve_plot(report["sides"], out / "latency.png")
        goodput_plot(report["sides"], config.targets.describe(), out / "goodput.png")


def render_markdown(report: dict[str, Any], config: ServeBenchConfig) -> str:
    lines = [
        "# distill bench serve",
        "",
        f"{report['prompts']['count']} prompts from {report['prompts']['source']}, the same messages to both sides; "
        f"max_tokens {config.max_tokens}"
        + (" (student forced to exactly that with ignore_eos)" if config.student.ignore_eos else "")
        + f". Load: {config.load.profile}, "
        + (_requests_text(config.load) if config.load.requests else f"{config.load.duration_s:g} s")
        + f" per point after {config.load.warmup} unmeasured warm-up request(s). Goodput targets: "
        f"{config.targets.describe()}; knee (★) = highest load with ≥ {config.targets.attainment:.0%} of requests "
        "meeting them.",
        "",
    ]
    for side in report["sides"]:
        lines.append(f"- {side['role']}: {side['label']} — {headline_label(side)}.")
    lines += ["", markdown_table(report["sides"], config.currency), ""]
    comparison = report.get("vllm_comparison")
    if comparison:
        lines += ["## Agreement with vLLM's serving benchmark", "", comparison_table(comparison), ""]
    overhead = report.get("overhead")
    if overhead:
        lines.append(
            f"Bench overhead: own work {overhead['own_s']:.2f} s of {overhead['wall_s']:.1f} s wall "
            f"({overhead['own_fraction']:.1%}); the load generator's CPU during the sweeps "
            f"{overhead['client_cpu_s']:.1f} s of {overhead['sweep_wall_s']:.1f} s "
            f"({overhead['client_cpu_fraction_of_sweeps']:.1%} of one core)."
        )
    return "\n".join(lines) + "\n"


def _requests_text(load: LoadProfile) -> str:
    waves = f" (at least {load.waves:g} × the concurrency)" if load.waves else ""
    return f"{load.requests} requests{waves}"


def bench_serve(config: ServeBenchConfig) -> int:
    """Run the bench and print its table."""
    report = run_bench(config, say=lambda message: print(f"distill bench serve: {message}", flush=True))
    print(render_markdown(report, config))
    return 0
