"""The training run inside one process: the only process, or one rank of a job that torchrun started.

Order of work: check data and student (prepare), plan every step, load the model, resume if asked, run the
steps (evaluating and checkpointing on schedule), then save the adapter, read it back, write the manifest and
the loss-curve PNG, and merge if asked. `distill.trainer.train.run_training` is the entry point that decides
whether this runs here or in ranks that `distill.trainer.launch` starts.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from distill.trainer import attention
from distill.trainer.adapter import expected_shapes, merge_adapter, save_adapter, verify_adapter
from distill.trainer.checkpoint import checkpoints_dir, complete_checkpoints, load_checkpoint, read_state
from distill.trainer.config import TrainConfig
from distill.trainer.data import fingerprint, ids_sha
from distill.trainer.distributed import Dist, setup, teardown
from distill.trainer.loop import Batches, History, make_stepper, plan_for, run_steps
from distill.trainer.loss import answer_loss
from distill.trainer.manifest import write_manifest
from distill.trainer.model import DTYPES, add_lora, load_student, pick_device
from distill.trainer.packing import Plan
from distill.trainer.plots import loss_curve_png
from distill.trainer.prepare import Prepared, prepare
from distill.trainer.progress import TrainProgress
from distill.trainer.student import chat_template_hash, model_hash

from distill import __version__
from distill.errors import UserError

ADAPTER_DIRNAME = "adapter"


def train_here(config: TrainConfig) -> Path:
    """Train in this process (joining the process group when torchrun started it); return the adapter dir."""
    device = pick_device(config.device)
    dist = setup(bool(config.deepspeed), device)
    try:
        return _train(config, dist, device)
    finally:
        teardown(dist)


def _zero_stage(stepper) -> int:
    engine = getattr(stepper, "engine", None)
    return engine.zero_optimization_stage() if engine is not None else 0


def _train(config: TrainConfig, dist: Dist, device: torch.device) -> Path:
    output_dir = config.output_path
    prepared = prepare(config)
    if dist.main:
        output_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    plan = plan_for(config, prepared.train.samples, dist.world)
    if not plan.steps:
        raise UserError(
            f"{', '.join(config.data)}: too few samples ({len(prepared.train.samples)}) for "
            f"{dist.world} processes"
        )
    attn = attention.register() if config.packing else "sdpa"
    student = add_lora(load_student(prepared.model_dir, config.dtype, device, attn), config)
    shapes = expected_shapes(student)
    objective = answer_loss(student, config, device)
    stepper = make_stepper(objective, config, plan, dist)
    history, start = History(), 0
    if config.resume:
        start = _resume(config, stepper, plan, dist, history)
    if start == 0 and dist.main:
        # A fresh run replaces an earlier run's checkpoints and log rather than mixing with them.
        shutil.rmtree(checkpoints_dir(output_dir), ignore_errors=True)
        (output_dir / "train_log.jsonl").unlink(missing_ok=True)
    last_step = min(len(plan.steps), config.max_steps or len(plan.steps))
    pad_id = prepared.tokenizer.pad_token_id
    eval_sets = {
        name: Batches(part.samples, config.packing, pad_id).all(
            config.token_budget, config.per_device_batch_size
        )
        for name, part in (("val", prepared.val), ("eval", prepared.eval))
        if part is not None
    }
    progress = TrainProgress(last_step, start, output_dir / "train_log.jsonl", enabled=dist.main)
    if dist.main:
        progress.note(_summary_line(config, prepared, plan, dist, start, last_step))
        if config.dtype == "bf16-mixed" and objective.autocast is None:
            progress.note(
                "dtype bf16-mixed: this CPU has no bf16 units (AVX512-BF16 or AMX), where bf16 matmuls run "
                "many times slower than fp32; training in fp32"
            )
        if objective.onednn:
            which = (
                "the output head's fp32 matrix multiplies" if objective.autocast else "fp32 matrix multiplies"
            )
            progress.note(f"{which} through oneDNN (faster than torch's BLAS on this CPU)")
    try:
        run_steps(
            config,
            stepper=stepper,
            plan=plan,
            batches=Batches(prepared.train.samples, config.packing, pad_id),
            eval_sets=eval_sets,
            device=device,
            dist=dist,
            history=history,
            start=start,
            last_step=last_step,
            progress=progress,
        )
    finally:
        progress.close()
    return _finish(config, prepared, plan, dist, stepper, shapes, history, last_step)


def _resume(config: TrainConfig, stepper, plan: Plan, dist: Dist, history: History) -> int:
    found = complete_checkpoints(config.output_path)
    if not found:
        return 0  # nothing to resume: a fresh start, which is what resume means on a first run
    if read_state(found[-1]).get("plan") != plan.digest:
        raise UserError(
            f"{found[-1]}: resume: this checkpoint was made with other data, settings or process "
            "count; resume with those, or train into a new --output-dir"
        )
    state = load_checkpoint(found[-1], stepper, rank=dist.rank, deepspeed=dist.deepspeed)
    history.restore(state.get("history", {}))
    return int(state["step"])


def _summary_line(
    config: TrainConfig, prepared: Prepared, plan: Plan, dist: Dist, start: int, last: int
) -> str:
    counts = prepared.counts
    parts = [
        f"{counts['train_samples']} train samples ({counts['train_tokens']} tokens)",
        f"{len(prepared.val.samples)} val",
        f"{counts['truncated']} truncated",
        f"{counts['dropped_overlong']} dropped as over-long",
    ]
    if prepared.eval is not None:
        parts.append(f"{len(prepared.eval.samples)} eval")
    mode = (
        f"packed ≤{config.token_budget} tokens"
        if config.packing
        else f"padded batches of {config.per_device_batch_size}"
    )
    where = f"{dist.world} processes (DeepSpeed)" if dist.deepspeed else "1 process"
    resumed = f", resuming at step {start}" if start else ""
    return (
        f"{', '.join(parts)}; {last} steps of {plan.micro_batches} micro-batches ({mode}) on {where}{resumed}"
    )


def _finish(
    config: TrainConfig,
    prepared: Prepared,
    plan: Plan,
    dist: Dist,
    stepper,
    shapes,
    history: History,
    last_step: int,
) -> Path:
    adapter_dir = config.output_path / ADAPTER_DIRNAME
    save_adapter(
        stepper.student,
        adapter_dir,
        rank=dist.rank,
        zero3=_zero_stage(stepper) == 3,
        base_model_dir=prepared.model_dir,
    )
    dist.barrier()
    if dist.main:
        verify_adapter(adapter_dir, shapes, trained=last_step > 0)
        merged = None
        if config.merge:
            merged = merge_adapter(
                prepared.model_dir, adapter_dir, config.output_path / "merged", DTYPES[config.dtype]
            )
        curves = {"train": history.train, "val": history.val, "eval": history.eval}
        loss_curve_png(
            curves,
            config.output_path / "loss_curve.png",
            f"LoRA r{config.lora_rank} on {Path(config.base_model).name} ({config.format})",
        )
        write_manifest(adapter_dir, _manifest(config, prepared, plan, dist, history, last_step, merged))
    dist.barrier()
    return adapter_dir


def _manifest(
    config: TrainConfig,
    prepared: Prepared,
    plan: Plan,
    dist: Dist,
    history: History,
    last_step: int,
    merged: Path | None,
) -> dict[str, Any]:
    train_ids = prepared.train_ids
    return {
        "base_model": config.base_model,
        "base_model_dir": str(prepared.model_dir.resolve()),
        "base_model_hash": model_hash(prepared.model_dir),
        "chat_template_hash": chat_template_hash(prepared.tokenizer),
        "format": config.format,
        "lora_rank": config.lora_rank,
        "lora_alpha": config.lora_alpha,
        "data_files": prepared.data.files,
        "data_fingerprint": fingerprint(prepared.train_examples, config.format),
        "train_ids": train_ids,
        "train_ids_sha": ids_sha(train_ids),
        "val_ids": sorted({ex.id for ex in prepared.val_examples}),
        "eval_ids": sorted({ex.id for ex in prepared.eval_examples}),
        "config": config.model_dump(mode="json"),
        "loss_curve": {"train": history.train, "val": history.val, "eval": history.eval},
        "tokens_per_second": round(history.tokens_per_second, 2),
        "train_tokens_seen": history.tokens,
        "train_seconds": round(history.seconds, 3),
        "steps": last_step,
        "planned_steps": len(plan.steps),
        "micro_batches_per_step": plan.micro_batches,
        "processes": dist.world,
        "counts": {**prepared.counts, "dropped_epoch_tail": plan.dropped_tail},
        "merged_dir": str(merged.resolve()) if merged else None,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "distill_version": __version__,
    }
