"""Token cross-entropy of a micro-batch, computed only where there is a label.

The output head (a 49k × 576 matrix for SmolLM2, a fifth of the model's work per token) runs only on the
positions that predict an answer token: ``logits_to_keep`` takes those positions, so prompt tokens never
reach the head. Losses are summed here and divided by the step's label count by the caller, so a step's
loss is the mean over its answer tokens however the samples were split into micro-batches.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from distill.trainer.packing import MicroBatch

# Sequence bounds: read on the host by the per-sample CPU attention, used on the device by the varlen kernel.
_BOUNDS = ("cu_seq_lens_q", "cu_seq_lens_k")


def to_device(batch: MicroBatch, device: torch.device) -> dict:
    moved = {}
    for key, value in batch.inputs.items():
        if isinstance(value, torch.Tensor) and (device.type == "cuda" or key not in _BOUNDS):
            value = value.to(device, non_blocking=True)
        moved[key] = value
    return moved


def summed_loss(
    model, batch: MicroBatch, device: torch.device, autocast: torch.dtype | None = None
) -> torch.Tensor:
    """Sum of token losses over the batch's labels (a zero with a graph for an empty micro-batch).

    ``autocast``: run the forward's matmuls in this dtype (weights and the loss stay fp32).
    """
    inputs = to_device(batch, device)
    keep = batch.keep.to(device)
    targets = batch.targets.to(device)
    with torch.autocast(device.type, dtype=autocast or torch.bfloat16, enabled=autocast is not None):
        if "attention_mask" in inputs:
            logits = model(**inputs).logits
            logits = logits.reshape(-1, logits.shape[-1])[keep]
        else:
            logits = model(**inputs, logits_to_keep=keep).logits[0]
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()  # the softmax over 50k+ classes needs fp32's range
    loss = F.cross_entropy(logits, targets, reduction="sum")
    return loss if batch.label_tokens else loss * 0.0


@torch.no_grad()
def mean_loss(
    model, batches: Iterable[MicroBatch], device: torch.device, autocast: torch.dtype | None = None
) -> float | None:
    """Token-weighted mean loss over ``batches`` (None when they hold no labels)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for batch in batches:
        if batch.label_tokens:
            total += float(summed_loss(model, batch, device, autocast))
            count += batch.label_tokens
    model.train(was_training)
    return total / count if count else None
