"""Which model directory vLLM loads for each student: the base model with the adapter as a LoRA request, or a
merged copy (base + adapter folded into plain weights).

Why both: vLLM's LoRA path is the same code on a GPU and on the CPU, and on a GPU it is the right one (one
engine serves the base and every adapter). On the CPU build, vLLM computes LoRA with torch-native ops that
gather a full copy of the adapter matrices *per token* (``lora_b_weights[indices]`` then an einsum), which made
generation 10.6× slower than the plain model here, and worse with long prompts (docs/evaluator.md). So ``lora: auto``
serves a merged copy on the CPU build and LoRA requests elsewhere; both can be forced.

A merged copy is made once per (base hash, adapter hash) under ``$DISTILL_CACHE/merged`` — or taken from the
training manifest's ``merged_dir`` when the trainer already wrote one.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from distill.evaluator.config import VllmEngineSettings
from distill.evaluator.students import Student, read_manifest
from distill.evaluator.vllm_server import serve_vllm, student_dtype, vllm_is_cpu_build
from distill.trainer.student import cache_root

from distill.files import replacing_directory


@dataclass(frozen=True)
class Placement:
    """One student as vLLM sees it: a model directory, and the adapter to apply as a LoRA request (or None)."""

    student: Student
    model_dir: Path
    lora_dir: Path | None


def use_merged(mode: str) -> bool:
    return mode == "merged" or (mode == "auto" and vllm_is_cpu_build())


def merged_dir_for(student: Student) -> Path:
    """A directory with the student's merged weights (made on first use, then reused)."""
    assert student.adapter_dir is not None
    manifest = read_manifest(student.adapter_dir) or {}
    given = manifest.get("merged_dir")
    if given:
        path = Path(given) if Path(given).is_absolute() else student.adapter_dir / given
        if (path / "config.json").is_file():
            return path
    target = cache_root() / "merged" / f"{student.base_hash}-{student.adapter_hash}"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two evaluations merging the same adapter would race on the rename
        if not (target / "config.json").is_file():
            _merge(student.base_dir, student.adapter_dir, target)
    return target


def _merge(base_dir: Path, adapter_dir: Path, target: Path) -> None:
    import torch
    from distill.trainer.adapter import merge_adapter

    with replacing_directory(target) as staging:
        merge_adapter(base_dir, adapter_dir, staging, torch.float32)


def place_students(students: Sequence[Student], lora_mode: str) -> dict[Path, list[Placement]]:
    """Students grouped by the model directory one vLLM engine loads for them."""
    merged = use_merged(lora_mode)
    groups: dict[Path, list[Placement]] = {}
    for student in students:
        if student.adapter_dir is None:
            placement = Placement(student, student.base_dir, None)
        elif merged:
            placement = Placement(student, merged_dir_for(student), None)
        else:
            placement = Placement(student, student.base_dir, student.adapter_dir)
        groups.setdefault(placement.model_dir, []).append(placement)
    return groups


@contextlib.contextmanager
def serve_placements(
    model_dir: Path,
    placements: Sequence[Placement],
    generation: VllmEngineSettings,
    *,
    dtype: str,
    log_dir: Path,
    timeout_s: float,
) -> Iterator[tuple[str, dict[str, str]]]:
    """`vllm serve` of one model directory for its students (the latency stage's and `distill bench serve`'s
    launch); yields the base URL and, per student name, the model name to send requests to."""
    served = next((p.student.name for p in placements if p.lora_dir is None), "base")
    adapters = {p.student.name: p.lora_dir for p in placements if p.lora_dir is not None}
    with serve_vllm(
        model_dir,
        lora_modules=adapters,
        served_model_name=served,
        dtype=student_dtype(dtype),
        max_model_len=generation.max_model_len,
        kv_cache_mib=generation.kv_cache_mib,
        cpu_threads=generation.cpu_threads,
        tensor_parallel_size=generation.tensor_parallel_size,
        data_parallel_size=generation.data_parallel_size,
        log_path=log_dir / f"vllm-serve-{model_dir.name}.log",
        timeout_s=timeout_s,
    ) as base_url:
        yield base_url, {p.student.name: p.student.name if p.lora_dir else served for p in placements}
