"""The step loop: micro-batches through forward/backward, the optimizer step, evaluation and checkpoints.

Shared by `run_training` and the benchmark, so the benchmark measures exactly what `distill train` runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
from distill.trainer.checkpoint import save_checkpoint
from distill.trainer.config import TrainConfig
from distill.trainer.distributed import Dist
from distill.trainer.loss import AnswerLoss, mean_loss, summed_loss
from distill.trainer.optim import DeepSpeedStepper, PlainStepper
from distill.trainer.packing import MicroBatch, Plan, build_plan, collate_packed, collate_padded
from distill.trainer.progress import TrainProgress
from distill.trainer.tokenize import Sample


@dataclass
class History:
    train: list[list[float]] = field(default_factory=list)
    val: list[list[float]] = field(default_factory=list)
    eval: list[list[float]] = field(default_factory=list)
    tokens: int = 0  # real (non-pad) tokens trained on, all ranks
    seconds: float = 0.0  # time inside training steps: no evaluation, no checkpoints
    steps: list[dict[str, Any]] = field(default_factory=list)  # this session's per-step records

    def to_state(self) -> dict[str, Any]:
        return {
            "train": self.train,
            "val": self.val,
            "eval": self.eval,
            "tokens": self.tokens,
            "seconds": self.seconds,
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.train, self.val, self.eval = state.get("train", []), state.get("val", []), state.get("eval", [])
        self.tokens, self.seconds = state.get("tokens", 0), state.get("seconds", 0.0)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


class Batches:
    """Collates micro-batches (packed or padded) from a list of samples."""

    def __init__(self, samples: list[Sample], packing: bool, pad_id: int) -> None:
        self.samples = samples
        self.packing = packing
        self.pad_id = pad_id

    def __call__(self, indices: list[int]) -> MicroBatch:
        chosen = [self.samples[i] for i in indices]
        return collate_packed(chosen) if self.packing else collate_padded(chosen, self.pad_id)

    def all(self, budget: int, batch: int) -> list[MicroBatch]:
        """Every sample once, for evaluation: packed into budget-sized rows, or padded groups."""
        if not self.samples:
            return []
        plan = build_plan(
            self.samples,
            epochs=1,
            per_device_batch=batch,
            grad_accum=len(self.samples),
            world=1,
            packing=self.packing,
            token_budget=budget,
            seed=0,
        )
        return [self(bins) for step in plan.steps for bins in step[0] if bins]


def plan_for(config: TrainConfig, samples: list[Sample], world: int) -> Plan:
    return build_plan(
        samples,
        epochs=config.epochs,
        per_device_batch=config.per_device_batch_size,
        grad_accum=config.gradient_accumulation_steps,
        world=world,
        packing=config.packing,
        token_budget=config.token_budget,
        seed=config.seed,
    )


def make_stepper(objective: AnswerLoss, config: TrainConfig, plan: Plan, dist: Dist):
    """The optimizer side for ``objective`` (the student and its loss): plain AdamW, or DeepSpeed's engine."""
    if dist.deepspeed:
        return DeepSpeedStepper(objective, config, len(plan.steps), plan.micro_batches, dist.world)
    return PlainStepper(objective, config, len(plan.steps))


def evaluate(
    forward, sets: dict[str, list[MicroBatch]], device: torch.device, history: History, step: int
) -> dict[str, float]:
    results = {}
    for name, batches in sets.items():
        loss = mean_loss(forward, batches, device)
        if loss is not None:
            getattr(history, name).append([step, loss])
            results[name] = loss
    return results


def run_steps(
    config: TrainConfig,
    *,
    stepper,
    plan: Plan,
    batches: Batches,
    eval_sets: dict[str, list[MicroBatch]],
    device: torch.device,
    dist: Dist,
    history: History,
    start: int,
    last_step: int,
    progress: TrainProgress,
) -> None:
    """Steps ``start`` .. ``last_step``-1 of ``plan``, then a final evaluation."""
    forward = getattr(stepper, "engine", None) or stepper.module
    forward.train()
    for step in range(start, last_step):
        began = time.perf_counter()
        step_loss = torch.zeros((), device=device)  # summed on the device: no host sync per micro-batch
        for indices in plan.steps[step][dist.rank]:
            loss = summed_loss(forward, batches(indices), device) / plan.label_tokens[step]
            stepper.backward(loss)
            stepper.micro_step()
            step_loss += loss.detach()
        grad_norm = stepper.step()
        step_loss = float(step_loss)  # waits for the step's last kernels, so the time below is real
        elapsed = time.perf_counter() - began
        step_loss = dist.sum([step_loss])[0]
        history.tokens += plan.real_tokens[step]
        history.seconds += elapsed
        history.train.append([step + 1, step_loss])
        record = {
            "step": step + 1,
            "loss": step_loss,
            "lr": stepper.lr,
            "grad_norm": grad_norm,
            "tokens": plan.real_tokens[step],
            "seconds": round(elapsed, 4),
            "tokens_per_second": history.tokens_per_second,
            "wall": time.perf_counter(),
        }
        history.steps.append(record)
        progress.step(record)
        if (step + 1) % config.eval_steps == 0 and step + 1 < last_step:
            results = evaluate(forward, eval_sets, device, history, step + 1)
            if results:
                progress.note(
                    f"step {step + 1}: " + ", ".join(f"{k} loss {v:.4f}" for k, v in results.items())
                )
        if (step + 1) % config.save_steps == 0 and step + 1 < last_step:
            save_checkpoint(
                config.output_path,
                step + 1,
                stepper,
                {"history": history.to_state(), "plan": plan.digest},
                rank=dist.rank,
                keep=config.save_total_limit,
                deepspeed=dist.deepspeed,
            )
    results = evaluate(forward, eval_sets, device, history, last_step)
    if results:
        progress.note("final: " + ", ".join(f"{k} loss {v:.4f}" for k, v in results.items()))
