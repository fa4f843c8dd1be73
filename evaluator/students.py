"""Which students are evaluated, checked against their training manifest, and the exact prompt each one sees.

A distilled student is a base model plus a LoRA adapter from `distill train`, whose ``distill_manifest.json``
records the base model's hash, the chat template's hash and the training ids. Evaluating the adapter on another
base model, or through another chat template, would measure a model nobody trained, and an eval item that was
trained on measures memory: all three are refused before anything runs.

The student's prompt is the instruction (``engine.prompts.build_instruction``, with the student's own task
description when its config gives one) rendered by the tokenizer's
own chat template with the generation prompt, as the trainer renders it, and tokenised without adding special
tokens a second time. Both generation backends receive these token ids.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.engine.prompts import build_instruction
from distill.evaluator.config import StudentConfig
from distill.evaluator.evalset import EvalItem
from distill.evaluator.vllm_server import lora_rank
from distill.trainer.manifest import MANIFEST_NAME
from distill.trainer.manifest import read_manifest as read_trainer_manifest
from distill.trainer.student import chat_template_hash, model_hash, resolve_student

from distill.errors import UserError

# The distillation data's ids: an eval item among them was trained on (train) or split from the same data (val).
_DISTILLATION_ID_KEYS = ("train_ids", "val_ids")


@dataclass
class Student:
    name: str
    role: str
    label: str
    base_dir: Path
    base_hash: str
    adapter_dir: Path | None
    adapter_hash: str | None
    rank: int | None
    answer_format: str | None  # "answer" or "thinking", from the manifest
    warnings: list[str]
    task: str | None = None  # its own task description (StudentConfig.task); None: the eval's

    @property
    def fingerprint(self) -> str:
        return f"{self.base_hash}:{self.adapter_hash or 'base'}"

    def instructions(self, items: Sequence[EvalItem]) -> list[str]:
        """What this student is asked for each item: the item's instruction, or its own task's."""
        if self.task is None:
            return [item.instruction for item in items]
        return [build_instruction(self.task, item.input) for item in items]


def read_manifest(adapter_dir: Path) -> dict[str, Any] | None:
    """The trainer's manifest (validated by the trainer's own reader), or None when the adapter has none."""
    if not (adapter_dir / MANIFEST_NAME).is_file():
        return None
    return read_trainer_manifest(adapter_dir)


def adapter_hash(adapter_dir: Path) -> str:
    """Fingerprint of the adapter's weights and config (student outputs are cached under it)."""
    digest = hashlib.sha256()
    for name in sorted(os.listdir(adapter_dir)):
        if name.startswith("adapter_") and name.endswith((".safetensors", ".bin", ".json")):
            digest.update(name.encode())
            with open(adapter_dir / name, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 22), b""):
                    digest.update(block)
    return digest.hexdigest()[:16]


def _distillation_ids(manifest: dict[str, Any]) -> set[str]:
    return {str(value) for key in _DISTILLATION_ID_KEYS for value in manifest.get(key) or ()}


def check_manifest(
    adapter_dir: Path, manifest: dict[str, Any] | None, base_hash: str, template_hash: str, eval_ids: set[str]
) -> list[str]:
    """Refuse an adapter trained on another base, with another template, or on eval items. Returns warnings."""
    where = adapter_dir / MANIFEST_NAME
    if manifest is None:
        return [
            f"{adapter_dir}: no {MANIFEST_NAME}: base model, chat template and training ids are unverified"
        ]
    trained_on = manifest.get("base_model_hash")
    if trained_on and trained_on != base_hash:
        raise UserError(
            f"{where}: base_model_hash: the adapter was trained on {manifest.get('base_model', 'another model')} "
            f"(hash {trained_on}), but the student's base model has hash {base_hash}: evaluate it on the "
            f"base model it was trained on"
        )
    trained_template = manifest.get("chat_template_hash")
    if trained_template and trained_template != template_hash:
        raise UserError(
            f"{where}: chat_template_hash: the adapter was trained with chat template {trained_template}, but "
            f"the base model's tokenizer has template {template_hash}: prompts would not match training"
        )
    overlap = sorted(_distillation_ids(manifest) & eval_ids)
    if overlap:
        shown = ", ".join(overlap[:5])
        raise UserError(
            f"{where}: {len(overlap)} eval item(s) were in the training data ({shown}): "
            "the eval set must be held out, not split from the distillation data"
        )
    warnings = []
    if not trained_on:
        warnings.append(f"{where}: no base_model_hash: the base model is unverified")
    if not trained_template:
        warnings.append(f"{where}: no chat_template_hash: the chat template is unverified")
    return warnings


def load_tokenizer(model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


def resolve_students(
    configs: Sequence[StudentConfig], eval_ids: set[str]
) -> tuple[list[Student], dict[Path, Any]]:
    """Resolve every student's model and adapter and run the manifest checks; also the tokenizer per base."""
    tokenizers: dict[Path, Any] = {}
    hashes: dict[Path, str] = {}
    students = []
    for config in configs:
        base_dir = resolve_student(config.model)
        if base_dir not in tokenizers:
            tokenizers[base_dir] = load_tokenizer(base_dir)
            hashes[base_dir] = model_hash(base_dir)
        warnings: list[str] = []
        adapter_dir = rank = digest = answer_format = None
        if config.adapter is not None:
            adapter_dir = Path(config.adapter)
            if not adapter_dir.is_dir():
                raise UserError(f"student {config.name}: adapter directory {adapter_dir} does not exist")
            rank = lora_rank(adapter_dir)
            manifest = read_manifest(adapter_dir)
            template = chat_template_hash(tokenizers[base_dir])
            warnings = check_manifest(adapter_dir, manifest, hashes[base_dir], template, eval_ids)
            answer_format = (manifest or {}).get("format")
            digest = adapter_hash(adapter_dir)
        label = config.label or (f"{config.model} + {adapter_dir.name}" if adapter_dir else str(config.model))
        students.append(
            Student(
                config.name,
                config.role,
                label,
                base_dir,
                hashes[base_dir],
                adapter_dir,
                digest,
                rank,
                answer_format,
                warnings,
                config.task,
            )
        )
    return students, tokenizers


def render_prompt_ids(tokenizer, instructions: Sequence[str]) -> list[list[int]]:
    """Token ids of each instruction exactly as the trainer renders the prompt (``trainer.tokenize.build_prompt``:
    a one-turn chat with the generation prompt), tokenised without adding special tokens a second time."""
    from distill.trainer.tokenize import build_prompt

    return [
        tokenizer(build_prompt(tokenizer, text), add_special_tokens=False)["input_ids"]
        for text in instructions
    ]
