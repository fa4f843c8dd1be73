"""The latency stage of `distill eval`: a load sweep of the teacher and of each student, with the same prompts.

Both sides get the same messages by default: the task instruction for the item (what the student was trained on
and what an application sends in production), so the curves compare like with like. ``latency.teacher_prompt:
generation_template`` sends the teacher the engine's chain-of-thought generation prompt instead (as during
`distill generate`); the report then says so, because the two sides answer different prompts. Outputs are not
forced to a length: each side writes as much as it would (up to ``max_tokens``), and the report shows the mean.

The student side is an OpenAI-compatible endpoint too: ``vllm serve`` of the base model with every adapter as
a LoRA module, or a merged copy (one server per model directory, see evaluator.serving), or an endpoint the
config names. Each side's sweep stops at ``time_budget_s`` (the points left are listed as not measured). A
finished sweep is saved under ``output_dir/latency/`` keyed by what was measured, so a rerun neither pays for
the teacher's sweep again nor restarts vLLM to measure the same student.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
from distill.engine.prompts import load_template
from distill.engine.types import ChatRequest
from distill.evaluator.config import EvalConfig
from distill.evaluator.evalset import EvalItem
from distill.evaluator.serving import place_students, serve_placements
from distill.evaluator.serving_bench import ServingSide, run_sweep
from distill.evaluator.students import Student
from distill.evaluator.teacher import teacher_request
from distill.evaluator.vllm_server import student_dtype

from distill.endpoint import Endpoint

# Distinct prompts a sweep cycles through (the first items of the eval set).
MAX_PROMPTS = 64


def instruction_requests(
    instructions: Sequence[str], model: str, max_tokens: int, extra_body: dict | None = None
) -> list[ChatRequest]:
    """Each item's task instruction as one greedy user message: the prompt both sides get by default."""
    return [
        ChatRequest(
            messages=[{"role": "user", "content": instruction}],
            model=model,
            temperature=0.0,
            max_tokens=max_tokens,
            extra_body=extra_body,
        )
        for instruction in instructions
    ]


class LatencyStage:
    def __init__(
        self, config: EvalConfig, items: Sequence[EvalItem], students: Sequence[Student], say: Callable
    ) -> None:
        self.config = config
        self.latency = config.latency
        self.items = list(items[:MAX_PROMPTS])
        self.students = list(students)
        self.say = say
        self.dir = config.output_dir / "latency"
        self.server_start_s = 0.0

    def _cache_path(self, *parts: Any) -> Path:
        settings = self.latency.model_dump(
            mode="json", exclude={"enabled", "measure_teacher", "students", "server_start_timeout_s"}
        )
        digest = hashlib.sha256(orjson.dumps([parts, settings], option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
        return self.dir / f"{digest}.json"

    def _cached(self, path: Path) -> dict[str, Any] | None:
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def _save(self, path: Path, result: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result), encoding="utf-8")

    def _sweep(self, side: ServingSide) -> dict[str, Any]:
        latency = self.latency
        self.say(
            f"latency: {side.label}, {len(latency.points())} load points × "
            + (f"{latency.requests} requests" if latency.requests else f"{latency.duration_s:g} s")
            + f" ({latency.profile}), budget {latency.time_budget_s or 'none'} s"
        )
        result = run_sweep(
            side,
            latency,
            latency.targets,
            budget_s=latency.time_budget_s,
            say=lambda message: self.say(f"latency: {message}"),
        )
        result["prompt"] = (
            "same instruction as the student" if side.role == "student" else self.teacher_prompt()
        )
        return result

    def teacher_prompt(self) -> str:
        if self.latency.teacher_prompt == "instruction":
            if any(student.task is not None for student in self.students):
                return "the eval's task instruction (the student is asked with its own task description)"
            return "same instruction as the student"
        return "the engine's chain-of-thought generation prompt (not the student's instruction)"

    def measure_teacher(self) -> dict[str, Any] | None:
        teacher = self.config.teacher
        if teacher is None or not self.latency.measure_teacher:
            return None
        if self.latency.teacher_prompt == "instruction":
            instructions = [item.instruction for item in self.items]
            requests = instruction_requests(instructions, teacher.model, self.latency.max_tokens)
        else:
            template = load_template(teacher.template)
            requests = [
                teacher_request(item, teacher, self.config.task, template, max_tokens=self.latency.max_tokens)
                for item in self.items
            ]
        path = self._cache_path("teacher", teacher.identity, teacher.model, [r.messages for r in requests])
        cached = self._cached(path)
        if cached is not None:
            return {**cached, "cached": True}
        side = ServingSide(
            "teacher", teacher.name, teacher, requests, price=teacher.price, cost_per_hour=None
        )
        result = self._sweep(side)
        self._save(path, result)
        return result

    def _student_path(self, student: Student) -> Path:
        generation = self.config.generation
        where = self.latency.student_base_url or (
            f"vllm-serve:{student_dtype(self.latency.student_dtype)}:{generation.lora}:"
            f"tp{generation.tensor_parallel_size}:dp{generation.data_parallel_size}"
        )
        return self._cache_path("student", student.fingerprint, where, student.instructions(self.items))

    def _measure_student(self, student: Student, base_url: str, model: str) -> dict[str, Any]:
        endpoint = Endpoint(base_url=base_url, model=model, api_key_env=None, request_timeout_s=600)
        side = ServingSide(
            "student",
            student.label or student.name,
            endpoint,
            instruction_requests(student.instructions(self.items), model, self.latency.max_tokens),
            cost_per_hour=self.config.roi.student_cost_per_hour,
        )
        result = self._sweep(side)
        self._save(self._student_path(student), result)
        return result

    def measure_students(self) -> dict[str, dict[str, Any]]:
        results: dict[str, dict[str, Any]] = {}
        todo = []
        wanted = self.latency.students
        for student in self.students:
            if wanted is not None and student.name not in wanted:
                continue
            cached = self._cached(self._student_path(student))
            if cached is not None:
                results[student.name] = {**cached, "cached": True}
            else:
                todo.append(student)
        if self.latency.student_base_url:
            for student in todo:
                results[student.name] = self._measure_student(
                    student, self.latency.student_base_url, student.name
                )
            return results
        for model_dir, placements in place_students(todo, self.config.generation.lora).items():
            adapters = sum(p.lora_dir is not None for p in placements)
            self.say(
                f"latency: starting vllm serve of {model_dir.name}"
                + (f" with {adapters} LoRA adapter(s)" if adapters else "")
            )
            started = time.perf_counter()
            with serve_placements(
                model_dir,
                placements,
                self.config.generation,
                dtype=self.latency.student_dtype,
                log_dir=self.config.output_dir / "logs",
                timeout_s=self.latency.server_start_timeout_s,
            ) as (base_url, models):
                self.server_start_s += time.perf_counter() - started
                for placement in placements:
                    student = placement.student
                    results[student.name] = self._measure_student(student, base_url, models[student.name])
        return results
