"""One `distill eval`: students, teacher, judge, task metrics, latency, ROI, report — in that order.

Stages are timed; each is marked as the evaluator's *own* work (loading, parsing, metrics, report) or as
waiting on generation, HTTP or a server, so the report can show what the evaluator itself costs. Student
generation runs in a vLLM process while the teacher's answers arrive over HTTP.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from distill.engine.parsing import answer_of
from distill.engine.types import CallFailure
from distill.evaluator.answer_schema import AnswerSchema, check_schema, load_answer_schema
from distill.evaluator.calls import Answer, CallCache, run_calls_sync
from distill.evaluator.config import EvalConfig
from distill.evaluator.evalset import EvalItem, load_eval_set
from distill.evaluator.generation import StudentGenerator
from distill.evaluator.grading import TEACHER, judge_requests, read_scores
from distill.evaluator.judge import judges_itself
from distill.evaluator.latency_stage import LatencyStage
from distill.evaluator.metrics import FieldScorer, exact_match, required_fields, summarise, summarise_exact
from distill.evaluator.report import write_report
from distill.evaluator.roi_inputs import roi_for_student
from distill.evaluator.students import Student, resolve_students
from distill.evaluator.teacher import teacher_requests

from distill.errors import UserError

OWN, WAIT = "own", "wait"


class StageClock:
    """Wall time per stage, and the process CPU time, to separate our overhead from generation and HTTP."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.cpu_started = time.process_time()
        self.stages: list[dict[str, Any]] = []

    @contextlib.contextmanager
    def stage(self, name: str, kind: str) -> Iterator[dict[str, Any]]:
        record: dict[str, Any] = {"stage": name, "kind": kind}
        started = time.perf_counter()
        try:
            yield record
        finally:
            record["seconds"] = round(time.perf_counter() - started, 3)
            self.stages.append(record)

    def summary(self) -> dict[str, Any]:
        wall = time.perf_counter() - self.started
        own = sum(stage["seconds"] for stage in self.stages if stage["kind"] == OWN)
        return {
            "wall_s": round(wall, 3),
            "own_s": round(own, 3),
            "own_fraction": own / wall if wall else None,
            "main_process_cpu_s": round(time.process_time() - self.cpu_started, 3),
            "stages": self.stages,
        }


def _print(message: str) -> None:
    print(f"distill eval: {message}", flush=True)


def _column(results: dict[str, Answer | CallFailure], ids: Sequence[str]) -> tuple[list[Answer | None], dict]:
    """Answers in item order (None where the call failed) and the failures counted by error class."""
    answers: list[Answer | None] = []
    failures: dict[str, int] = {}
    for item_id in ids:
        result = results.get(item_id)
        answers.append(result if isinstance(result, Answer) else None)
        if isinstance(result, CallFailure):
            failures[result.error_class] = failures.get(result.error_class, 0) + 1
    return answers, failures


def _tokens(answers: Sequence[Answer | None]) -> dict[str, float | None]:
    prompt = [a.prompt_tokens for a in answers if a is not None and a.prompt_tokens is not None]
    completion = [a.completion_tokens for a in answers if a is not None and a.completion_tokens is not None]
    return {
        "prompt_mean": sum(prompt) / len(prompt) if prompt else None,
        "completion_mean": sum(completion) / len(completion) if completion else None,
    }


def _system_entry(
    config: EvalConfig,
    system: str,
    items: Sequence[EvalItem],
    column: Sequence[Answer | None],
    replies: dict[str, Answer | CallFailure],
    scorer: FieldScorer | None,
    per_item: list[dict[str, Any]],
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "items": len(items),
        "answered": sum(a is not None for a in column),
        "tokens": _tokens(column),
    }
    if scorer is not None:
        compared = [
            scorer.compare(item.structured or {}, a.text if a else None)
            for item, a in zip(items, column, strict=True)
        ]
        entry["task"] = summarise(compared, scorer.fields)
        for row, result in zip(per_item, compared, strict=True):
            row[f"{system}_wrong_fields"] = result.wrong
    else:
        matches = [
            exact_match(item.reference, a.text if a else None) for item, a in zip(items, column, strict=True)
        ]
        entry["task"] = summarise_exact(matches, entry["answered"])
        for row, match in zip(per_item, matches, strict=True):
            row[f"{system}_exact_match"] = match
    if config.judge is not None and config.judge.mode in ("score", "both"):
        scores, missing = read_scores(system, items, column, replies)
        valid = [score for score in scores if score is not None]
        entry["judge"] = {
            "avg": sum(valid) / len(valid) if valid else None,
            "scored": len(valid),
            "missing": dict(missing),
            "scores": scores,
        }
        for row, score in zip(per_item, scores, strict=True):
            row[f"{system}_score"] = score
    for row, answer in zip(per_item, column, strict=True):
        row[f"{system}_answer"] = answer_of(answer.text) if answer else None
    return entry


def _answer_schema(config: EvalConfig, items: Sequence[EvalItem]) -> AnswerSchema | None:
    """The configured answer schema, checked, with every reference checked against it."""
    spec = config.metrics.answer_schema
    if spec is None:
        return None
    schema = (
        load_answer_schema(spec) if isinstance(spec, Path) else check_schema(spec, "metrics.answer_schema")
    )
    if not schema.fields:
        raise UserError(
            "metrics.answer_schema: must describe a JSON object with properties (field F1 counts them)"
        )
    for item in items:
        reference = item.structured if item.structured is not None else item.reference
        problem = schema.problem(reference)
        if problem is not None:
            raise UserError(
                f"{config.eval_set}:{item.line}: {config.reference_field}: does not satisfy the answer schema: "
                f"{problem}"
            )
    return schema


def _prepare(
    config: EvalConfig, warnings: list[str]
) -> tuple[list[EvalItem], list[Student], dict, AnswerSchema | None]:
    items = load_eval_set(
        config.eval_set,
        config.task,
        id_field=config.id_field,
        input_field=config.input_field,
        reference_field=config.reference_field,
        limit=config.limit,
    )
    schema = _answer_schema(config, items)
    students, tokenizers = resolve_students(config.students, {item.id for item in items})
    for student in students:
        warnings.extend(student.warnings)
    if (
        config.teacher
        and config.judge
        and judges_itself(
            config.judge.base_url, config.judge.model, config.teacher.base_url, config.teacher.model
        )
    ):
        warnings.append(
            "the judge is the teacher itself: expect self-preference in its scores of the teacher"
        )
    return items, students, tokenizers, schema


def run_evaluation(config: EvalConfig, *, say: Callable[[str], None] = _print) -> dict[str, Any]:
    """Evaluate every student (and the teacher) on the eval set; write and return the report."""
    clock = StageClock()
    out = config.output_dir
    warnings: list[str] = []
    answers: dict[str, list[Answer | None]] = {}
    call_stats: dict[str, Any] = {}
    call_failures: dict[str, dict] = {}
    replies: dict[str, Answer | CallFailure] = {}
    with contextlib.ExitStack() as stack:
        with clock.stage("prepare", OWN):
            # Bad input fails before output_dir exists.
            items, students, tokenizers, schema = _prepare(config, warnings)
            out.mkdir(parents=True, exist_ok=True)
            ids = [item.id for item in items]
            teacher_cache = stack.enter_context(CallCache(out / "cache" / "teacher.jsonl"))
            judge_cache = stack.enter_context(CallCache(out / "cache" / "judge.jsonl"))
            student_cache = stack.enter_context(CallCache(out / "cache" / "students.jsonl"))
            generator = StudentGenerator(
                students, tokenizers, items, config.generation, student_cache, out / "work"
            )
            stack.callback(generator.close)
        for warning in warnings:
            say(f"warning: {warning}")
        say(
            f"{len(items)} items, {len(students)} student(s): {generator.to_generate} outputs to generate "
            f"with {generator.backend}, {generator.cached} cached"
        )
        with clock.stage("student generation: start", WAIT):
            generator.start()
        if config.teacher is not None:
            with clock.stage("teacher calls", WAIT):
                requests = teacher_requests(items, config.teacher, config.task)
                results, stats = run_calls_sync(
                    config.teacher, "teacher", requests, teacher_cache, warnings=warnings
                )
            answers[TEACHER], call_failures[TEACHER] = _column(results, ids)
            call_stats[TEACHER] = stats.as_dict()
            say(
                f"teacher: {stats.cached} cached, {stats.succeeded} answered, {sum(stats.failed.values())} failed"
            )
        with clock.stage("student generation", WAIT):
            answers.update(generator.wait())
        say(f"students: {generator.generated} generated, {generator.cached} cached")
        if config.judge is not None:
            with clock.stage("judge requests", OWN):
                requests = judge_requests(config.judge, items, answers)
            with clock.stage("judge calls", WAIT):
                replies, stats = run_calls_sync(
                    config.judge, "judge", requests, judge_cache, warnings=warnings
                )
            call_stats["judge"] = stats.as_dict()
            say(
                f"judge: {stats.cached} cached, {stats.succeeded} answered, {sum(stats.failed.values())} failed"
            )

    with clock.stage("metrics", OWN):
        configured = config.metrics.fields or (schema.fields if schema is not None else None)
        fields = required_fields([item.structured for item in items], configured)
        structured = bool(fields) and all(item.structured is not None for item in items)
        scorer = (
            FieldScorer(fields, config.metrics.normalisers, config.metrics.field_normalisers, schema)
            if structured
            else None
        )
        per_item: list[dict[str, Any]] = [{"id": item.id} for item in items]
        systems = {
            system: _system_entry(config, system, items, column, replies, scorer, per_item)
            for system, column in answers.items()
        }
        for system, failed in call_failures.items():
            systems[system]["call_failures"] = failed

    latency: dict[str, Any] = {}
    if config.latency.enabled:
        stage = LatencyStage(config, items, students, say)
        with clock.stage("latency: teacher", WAIT):
            measured = stage.measure_teacher()
            if measured is not None:
                latency[TEACHER] = measured
        with clock.stage("latency: students", WAIT) as record:
            latency.update(stage.measure_students())
            record["server_start_s"] = round(stage.server_start_s, 3)

    with clock.stage("roi + report", OWN):
        report = {
            "items": len(items),
            "fields": fields if structured else None,
            # How answers were scored: field F1 + compliance (with or without a schema), or exact match.
            "scoring": ("answer schema" if schema is not None else "fields") if structured else "exact match",
            "teacher": config.teacher.name if config.teacher else None,
            "judge": config.judge.name if config.judge else None,
            "judge_mode": config.judge.mode if config.judge else None,
            "students": {
                s.name: {
                    "role": s.role,
                    "label": s.label,
                    "base_dir": str(s.base_dir),
                    "adapter_dir": str(s.adapter_dir) if s.adapter_dir else None,
                    "fingerprint": s.fingerprint,
                    "answer_format": s.answer_format,
                }
                for s in students
            },
            "systems": systems,
            "comparisons": {
                s.name: roi_for_student(config, s.name, systems, latency, replies, items) for s in students
            },
            "latency": latency,
            "generation": generator.summary(),
            "calls": call_stats,
            "warnings": warnings,
            "config": config.model_dump(mode="json"),
        }
        report["timing"] = clock.summary()
        write_report(report, per_item, out, plots=config.plots)
    report["timing"] = clock.summary()  # again, now with the report stage itself
    write_report(report, per_item, out, plots=False)
    say(f"report: {out / 'report.md'}")
    return report
