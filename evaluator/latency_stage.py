"""The latency stage of `distill eval`: the same items, streamed at the same concurrency, teacher and students.

The student side is an OpenAI-compatible endpoint too: ``vllm serve`` of the base model with every adapter as
a LoRA module (one server for all students of one base model), or an endpoint the config names. A finished
measurement is saved under ``output_dir/latency/`` keyed by what was measured, so a rerun neither pays for
the teacher's load test again nor restarts vLLM to measure the same student.
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
from distill.evaluator.latency import run_load_test
from distill.evaluator.serving import place_students
from distill.evaluator.students import Student
from distill.evaluator.teacher import teacher_request
from distill.evaluator.vllm_server import serve_vllm

from distill.endpoint import Endpoint


def _pick(items: Sequence[EvalItem], count: int) -> list[EvalItem]:
    return [items[index % len(items)] for index in range(count)]


def _student_requests(items: Sequence[EvalItem], model: str, max_tokens: int) -> list[ChatRequest]:
    return [
        ChatRequest(
            messages=[{"role": "user", "content": item.instruction}],
            model=model,
            temperature=0.0,
            max_tokens=max_tokens,
            request_id=f"eval-latency-{model}-{index}",
        )
        for index, item in enumerate(items)
    ]


class LatencyStage:
    def __init__(
        self, config: EvalConfig, items: Sequence[EvalItem], students: Sequence[Student], say: Callable
    ) -> None:
        self.config = config
        self.latency = config.latency
        self.items = _pick(items, config.latency.requests)
        self.students = list(students)
        self.say = say
        self.dir = config.output_dir / "latency"
        self.server_start_s = 0.0

    def _cache_path(self, *parts: Any) -> Path:
        digest = hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
        return self.dir / f"{digest}.json"

    def _cached(self, path: Path) -> dict[str, Any] | None:
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def _save(self, path: Path, result: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result), encoding="utf-8")

    def measure_teacher(self) -> dict[str, Any] | None:
        teacher = self.config.teacher
        if teacher is None or not self.latency.measure_teacher:
            return None
        template = load_template(teacher.template)
        requests = [
            teacher_request(
                item,
                teacher,
                self.config.task,
                template,
                max_tokens=self.latency.max_tokens,
                tag=f"-latency-{index}",
            )
            for index, item in enumerate(self.items)
        ]
        path = self._cache_path(
            "teacher",
            teacher.base_url,
            teacher.model,
            [r.messages for r in requests],
            self.latency.concurrency,
            self.latency.max_tokens,
            self.latency.warmup,
        )
        cached = self._cached(path)
        if cached is not None:
            return {**cached, "cached": True}
        self.say(
            f"latency: teacher, {len(requests)} streamed requests at concurrency {self.latency.concurrency}"
        )
        result = run_load_test(
            teacher, requests, concurrency=self.latency.concurrency, warmup=self.latency.warmup
        )
        self._save(path, result)
        return result

    def _student_path(self, student: Student) -> Path:
        where = (
            self.latency.student_base_url
            or f"vllm-serve:{self.latency.student_dtype}:{self.config.generation.lora}"
        )
        return self._cache_path(
            "student",
            student.fingerprint,
            where,
            [i.instruction for i in self.items],
            self.latency.concurrency,
            self.latency.max_tokens,
            self.latency.warmup,
        )

    def _measure_student(self, base_url: str, model: str) -> dict[str, Any]:
        self.say(
            f"latency: student {model}, {len(self.items)} streamed requests at concurrency {self.latency.concurrency}"
        )
        return run_load_test(
            Endpoint(base_url=base_url, model=model, api_key_env=None, request_timeout_s=600),
            _student_requests(self.items, model, self.latency.max_tokens),
            concurrency=self.latency.concurrency,
            warmup=self.latency.warmup,
        )

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
                results[student.name] = self._measure_student(self.latency.student_base_url, student.name)
                self._save(self._student_path(student), results[student.name])
            return results
        for model_dir, placements in place_students(todo, self.config.generation.lora).items():
            served = next((p.student.name for p in placements if p.lora_dir is None), "base")
            adapters = {p.student.name: p.lora_dir for p in placements if p.lora_dir is not None}
            self.say(
                f"latency: starting vllm serve of {model_dir.name}"
                + (f" with {len(adapters)} LoRA adapter(s)" if adapters else "")
            )
            started = time.perf_counter()
            with serve_vllm(
                model_dir,
                lora_modules=adapters,
                served_model_name=served,
                dtype=self.latency.student_dtype,
                max_model_len=self.config.generation.max_model_len,
                kv_cache_mib=self.config.generation.kv_cache_mib,
                cpu_threads=self.config.generation.cpu_threads,
                tensor_parallel_size=self.config.generation.tensor_parallel_size,
                data_parallel_size=self.config.generation.data_parallel_size,
                log_path=self.config.output_dir / "logs" / f"vllm-serve-{model_dir.name}.log",
                timeout_s=self.latency.server_start_timeout_s,
            ) as base_url:
                self.server_start_s += time.perf_counter() - started
                for placement in placements:
                    student = placement.student
                    model = student.name if placement.lora_dir is not None else served
                    results[student.name] = self._measure_student(base_url, model)
                    self._save(self._student_path(student), results[student.name])
        return results
