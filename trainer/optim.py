"""The optimizer side of a step, alike with or without DeepSpeed: backward, step, state for checkpoints.

Plain: torch AdamW on the adapter's parameters. DeepSpeed: the same AdamW and schedule handed to
``deepspeed.initialize`` (no JIT-compiled cpu_adam needed), ZeRO doing the partitioning. Gradient
accumulation is ours in both: the plan fixes the number of micro-batches per step, and each micro-batch's
loss is already divided by the step's label count.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from distill.trainer.config import TrainConfig
from distill.trainer.model import trainable_parameters

from distill.errors import UserError


def lr_lambda(config: TrainConfig, total_steps: int):
    warmup = math.ceil(config.warmup_ratio * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if config.lr_scheduler == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total_steps - warmup)
        if config.lr_scheduler == "linear":
            return max(0.0, 1.0 - progress)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _adamw(model, config: TrainConfig, total_steps: int):
    optimizer = torch.optim.AdamW(
        trainable_parameters(model),
        lr=config.learning_rate,
        weight_decay=config.weight_decay,
        betas=(0.9, 0.999),
        eps=1e-8,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(config, total_steps))
    return optimizer, scheduler


class PlainStepper:
    """One process, torch AdamW, gradient clipping by global norm."""

    world = 1

    def __init__(self, model, config: TrainConfig, total_steps: int) -> None:
        self.model = model
        self.config = config
        self.optimizer, self.scheduler = _adamw(model, config, total_steps)
        self.parameters = trainable_parameters(model)

    @property
    def module(self):
        return self.model

    @property
    def student(self):
        """The PEFT model inside the objective: what is saved and checkpointed."""
        return self.model.student

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def micro_step(self) -> None:
        """Called after every backward; the plain stepper only acts on `step`."""

    def step(self) -> float:
        norm = 0.0
        if self.config.max_grad_norm > 0:
            norm = float(torch.nn.utils.clip_grad_norm_(self.parameters, self.config.max_grad_norm))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return norm

    @property
    def lr(self) -> float:
        return self.scheduler.get_last_lr()[0]

    def save(self, directory: Path) -> None:
        torch.save(
            {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()},
            directory / "optimizer.pt",
        )

    def load(self, directory: Path) -> None:
        state = torch.load(directory / "optimizer.pt", map_location="cpu", weights_only=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])


def deepspeed_config(config: TrainConfig, micro_batches: int, world: int) -> dict:
    """The user's DeepSpeed JSON with batch sizes, clipping and precision filled in from our settings."""
    path = Path(config.deepspeed)
    try:
        ds = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: deepspeed: config file not found") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{exc.lineno}: deepspeed: not valid JSON: {exc.msg}") from None
    if not isinstance(ds, dict):
        raise UserError(f"{path}:1: deepspeed: must be a JSON object")
    for key in ("optimizer", "scheduler"):
        if key in ds:
            raise UserError(
                f"{path}: {key}: remove it; the trainer supplies AdamW and the schedule from its config"
            )
    ds["train_micro_batch_size_per_gpu"] = 1  # a micro-batch is one packed row (or one padded group)
    ds["gradient_accumulation_steps"] = micro_batches
    ds["train_batch_size"] = micro_batches * world
    ds["gradient_clipping"] = config.max_grad_norm
    ds["bf16"] = {**ds.get("bf16", {}), "enabled": config.dtype == "bf16"}
    ds.setdefault("zero_allow_untested_optimizer", True)
    ds.setdefault("steps_per_print", 10**9)
    ds.setdefault("wall_clock_breakdown", False)
    return ds


class DeepSpeedStepper:
    """ZeRO-2/3 through a DeepSpeed engine; the engine counts micro-batches to find the step boundary."""

    def __init__(self, model, config: TrainConfig, total_steps: int, micro_batches: int, world: int) -> None:
        import deepspeed

        self.config = config
        self.world = world
        optimizer, scheduler = _adamw(model, config, total_steps)
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=model,
            optimizer=optimizer,
            lr_scheduler=scheduler,
            config=deepspeed_config(config, micro_batches, world),
        )

    @property
    def module(self):
        return self.engine.module

    @property
    def student(self):
        return self.engine.module.student

    def backward(self, loss: torch.Tensor) -> None:
        # ZeRO averages gradients over processes; our loss is already a share of the global label count.
        self.engine.backward(loss * self.world, scale_wrt_gas=False)

    def micro_step(self) -> None:
        self.engine.step()

    def step(self) -> float:
        norm = self.engine.get_global_grad_norm()
        return float(norm) if norm is not None else 0.0

    @property
    def lr(self) -> float:
        return self.scheduler.get_last_lr()[0]

    def save(self, directory: Path) -> None:
        self.engine.save_checkpoint(str(directory), tag="deepspeed", exclude_frozen_parameters=True)

    def load(self, directory: Path) -> None:
        path, _ = self.engine.load_checkpoint(str(directory), tag="deepspeed", load_module_strict=False)
        if path is None:
            raise UserError(f"{directory}: resume: no DeepSpeed state in this checkpoint")
