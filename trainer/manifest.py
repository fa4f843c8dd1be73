"""``distill_manifest.json`` beside the adapter: what the evaluator checks before trusting it.

Keys (stable contract): base_model, base_model_dir, base_model_hash, chat_template_hash, format, lora_rank,
lora_alpha, data_fingerprint, train_ids, train_ids_sha, val_ids, eval_ids, config, loss_curve
{train: [[step, loss]], val: [[step, loss]], eval: [[step, loss]]}, tokens_per_second, steps, counts,
merged_dir (or null), created_at, distill_version.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from distill.errors import UserError
from distill.files import write_atomically

MANIFEST_NAME = "distill_manifest.json"
REQUIRED = (
    "base_model",
    "base_model_dir",
    "base_model_hash",
    "chat_template_hash",
    "format",
    "lora_rank",
    "data_fingerprint",
    "train_ids_sha",
    "config",
    "loss_curve",
    "tokens_per_second",
)


def write_manifest(adapter_dir: Path, manifest: dict[str, Any]) -> Path:
    missing = [key for key in REQUIRED if key not in manifest]
    if missing:
        raise ValueError(f"manifest lacks {missing}")
    return write_atomically(adapter_dir / MANIFEST_NAME, json.dumps(manifest, indent=1, ensure_ascii=False))


def read_manifest(adapter_dir: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a trained adapter; a UserError naming the file if it is absent or incomplete."""
    path = Path(adapter_dir) / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(
            f"{path}: no trainer manifest: is {adapter_dir} an adapter written by `distill train`?"
        ) from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    if not isinstance(manifest, dict):
        raise UserError(f"{path}: must hold a JSON object")
    missing = [key for key in REQUIRED if key not in manifest]
    if missing:
        raise UserError(f"{path}: {missing[0]}: missing field")
    return manifest
