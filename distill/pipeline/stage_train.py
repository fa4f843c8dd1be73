"""The train stage: LoRA SFT of the student on the exported dataset, by `distill train` in a child process.

A child process, because training holds gigabytes that the evaluation's vLLM needs next, and because
Ctrl-C must stop torch's worker threads cleanly. The child is the trainer's own command, `distill train
--config RUN/configs/train.yaml`: the one entry point the CLI and the pipeline share, and the file lets the
stage be rerun by hand. Its config is the pipeline's choices plus the run config's ``train:`` section.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from distill.errors import UserError
from distill.pipeline.children import run_child
from distill.pipeline.context import StageContext
from distill.pipeline.markers import StageRecord, claim_output_dir, stage_key
from distill.pipeline.sections import chosen
from distill.processes import python_module_command
from distill.trainer.config import TrainConfig
from distill.trainer.manifest import read_manifest
from distill.trainer.student import DEFAULT_STUDENT, packaged_gguf

NAME = "train"


def train_config(context: StageContext) -> TrainConfig:
    """The trainer's config: the run config's ``train:`` section over the pipeline's own choices."""
    thinking = context.config.with_thinking
    data = {
        # Reasoning roughly doubles a sample; a shorter limit would cut off the answer it leads to.
        "max_length": 2048 if thinking else 1024,
        **chosen(context.config.train),
        "data": [str(context.run_dir / "dataset" / f"{context.task.name}_alpaca.jsonl")],
        "output_dir": str(context.run_dir / "train"),
        "base_model": context.config.student,
        "format": "thinking" if thinking else "answer",
    }
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        raise context.loaded.section_error(exc, "train") from None


def _check_student(context: StageContext) -> None:
    """The student is a known alias, a Hugging Face model directory or a .gguf file: say which is wrong now."""
    spec = context.config.student
    path = Path(spec).expanduser()
    where = f"{context.loaded.where('student')}: student"
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UserError(f"{where}: {path} is a directory without config.json, not a Hugging Face model")
    elif path.suffix == ".gguf":
        if not path.is_file():
            raise UserError(f"{where}: {path} not found")
    else:
        try:
            packaged_gguf(spec)
        except KeyError:
            raise UserError(
                f"{where}: {spec!r} is neither a model directory, a .gguf file nor a known alias "
                f"({DEFAULT_STUDENT})"
            ) from None


def check(context: StageContext) -> None:
    """The whole trainer config is known before anything runs: validate it now, cross-field rules included,
    and the student's model must be there."""
    train_config(context)
    _check_student(context)


def key(context: StageContext) -> str:
    return stage_key(NAME, context.key("export"), context.config.student, chosen(context.config.train))


def run(context: StageContext) -> tuple[dict[str, Any], dict[str, Any]]:
    config = train_config(context).model_copy(update={"resume": True})  # resume = fresh start when none
    out = config.output_path
    claim_output_dir(out, key(context))
    config_path = context.run_dir / "configs" / "train.yaml"
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(
        yaml.safe_dump(config.model_dump(mode="json"), allow_unicode=True, sort_keys=False)
    )
    run_child(
        python_module_command("distill", "train", "--config", str(config_path)),
        log_path=context.run_dir / "logs" / "train.log",
        name="training",
    )
    adapter = out / "adapter"
    manifest = read_manifest(adapter)
    curve = manifest["loss_curve"]["train"]
    details = {
        "steps": manifest["steps"],
        "tokens_per_second": manifest["tokens_per_second"],
        "train_seconds": manifest.get("train_seconds"),
        "train_tokens_seen": manifest.get("train_tokens_seen"),
        "first_loss": curve[0][1] if curve else None,
        "last_loss": curve[-1][1] if curve else None,
        "val_loss": manifest["loss_curve"]["val"][-1][1] if manifest["loss_curve"]["val"] else None,
        "counts": manifest.get("counts", {}),
        "config": {k: manifest["config"].get(k) for k in _REPORTED},
    }
    outputs = {"adapter": adapter, "manifest": adapter / "distill_manifest.json"}
    if (out / "loss_curve.png").is_file():
        outputs["loss_curve"] = out / "loss_curve.png"
    return outputs, details


_REPORTED = (
    "format",
    "lora_rank",
    "lora_alpha",
    "learning_rate",
    "epochs",
    "per_device_batch_size",
    "gradient_accumulation_steps",
    "token_budget",
    "max_length",
    "dtype",
    "val_size",
)


def summary_for_report(record: StageRecord) -> dict[str, Any]:
    """What the run's report says about training, from the stage's record."""
    d = record.details
    counts = d.get("counts", {})
    lines = [
        f"{d.get('steps')} optimizer steps over {counts.get('train_samples', '?')} samples "
        f"({counts.get('train_tokens', '?')} tokens per epoch); {d.get('train_tokens_seen')} tokens trained on in "
        f"{d.get('train_seconds')} s of steps = {d.get('tokens_per_second')} real tokens/s.",
        f"Training loss {d.get('first_loss', 0):.3f} → {d.get('last_loss', 0):.3f}"
        + (f"; validation loss {d['val_loss']:.3f}" if d.get("val_loss") is not None else "")
        + ".",
        "Settings: " + ", ".join(f"{k} {v}" for k, v in d.get("config", {}).items()) + ".",
    ]
    figures = [record.outputs["loss_curve"]] if "loss_curve" in record.outputs else []
    return {"lines": lines, "figures": figures}
