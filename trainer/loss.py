"""Token cross-entropy of a micro-batch, computed only where there is a label, a slice of rows at a time.

The output head is the largest matrix of a small student (SmolLM2: 49k × 576; Qwen2: 152k × 896), and full
logits for a packed row cost ``tokens × vocab`` floats — gigabytes in fp32 — when the loss needs only the
answer tokens. So the model's body runs on the whole row, but the head runs only on the hidden states of the
positions that predict an answer token, and only ``_CHUNK_ELEMENTS / vocab`` rows at a time: each slice's
logits give its loss and, straight away, the gradient of that loss with respect to its hidden states
(``(softmax - onehot) @ W``), and are freed before the next slice. This is the fused linear cross-entropy of
Liger Kernel, written in torch: Liger's kernels are Triton and need a GPU, and this version runs the same on
the CPU and on CUDA. Losses are summed here and divided by the step's label count by the caller, so a step's
loss is the mean over its answer tokens however the samples were split into micro-batches.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from distill.trainer.config import TrainConfig
from distill.trainer.gemm import onednn_linear, use_fastest_cpu_gemm
from distill.trainer.model import autocast_dtype
from distill.trainer.packing import MicroBatch

# Logits held at once per slice: 2**24 fp32 values = 64 MiB (341 rows of SmolLM2's vocabulary).
_CHUNK_ELEMENTS = 1 << 24
_MIN_CHUNK_ROWS = 64

# Sequence bounds: read on the host by the per-sample CPU attention, used on the device by the varlen kernel.
_BOUNDS = ("cu_seq_lens_q", "cu_seq_lens_k")


class _LinearCrossEntropy(torch.autograd.Function):
    """sum_i CE(hidden_i @ weight.T, target_i), with the gradient taken slice by slice in the forward."""

    @staticmethod
    def forward(
        ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, rows: int, onednn: bool
    ):
        want_hidden, want_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        ctx.weight_dtype = weight.dtype
        compute = weight.dtype  # the head's own precision: fp32 weights give an exact fp32 head
        onednn = onednn and compute == torch.float32 and not weight.is_cuda
        exact = torch.promote_types(
            compute, torch.float32
        )  # the softmax over 50k+ classes needs fp32's range
        grad_hidden = torch.empty_like(hidden) if want_hidden else None
        grad_weight = torch.zeros_like(weight, dtype=exact) if want_weight else None
        total = torch.zeros((), dtype=exact, device=hidden.device)
        for start in range(0, hidden.shape[0], rows):
            part = hidden[start : start + rows].to(compute)
            goal = targets[start : start + rows]
            logits = (onednn_linear(part, weight) if onednn else part @ weight.T).to(exact)
            norm = torch.logsumexp(logits, dim=-1)
            total += (norm - logits.gather(1, goal.unsqueeze(1)).squeeze(1)).sum()
            if grad_hidden is None and grad_weight is None:
                continue
            probs = logits.sub_(norm.unsqueeze(1)).exp_()  # in place: d(sum CE)/d logits = softmax - onehot
            probs[torch.arange(goal.shape[0], device=goal.device), goal] -= 1.0
            probs = probs.to(compute)
            if grad_hidden is not None:
                grad_hidden[start : start + rows] = (
                    onednn_linear(probs, weight.T) if onednn else probs @ weight
                )
            if grad_weight is not None:
                grad_weight += probs.T @ part
        ctx.save_for_backward(grad_hidden, grad_weight)
        return total

    @staticmethod
    def backward(ctx, grad_total: torch.Tensor):
        grad_hidden, grad_weight = ctx.saved_tensors
        if grad_hidden is not None:
            grad_hidden = grad_hidden * grad_total.to(grad_hidden.dtype)
        if grad_weight is not None:
            grad_weight = (grad_weight * grad_total).to(ctx.weight_dtype)
        return grad_hidden, grad_weight, None, None, None


def linear_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, onednn: bool = False
) -> torch.Tensor:
    """Summed cross-entropy of ``hidden @ weight.T`` against ``targets`` without holding all the logits.

    hidden: (N, D) at the labelled positions; weight: (V, D), the output head; targets: (N,). Exactly
    ``F.cross_entropy(hidden @ weight.T, targets, reduction="sum")`` up to summation order. ``onednn``: run
    an fp32 head's multiplies on the CPU through oneDNN (`distill.trainer.gemm`).
    """
    rows = max(_MIN_CHUNK_ROWS, _CHUNK_ELEMENTS // weight.shape[0])
    return _LinearCrossEntropy.apply(hidden, weight, targets, rows, onednn)


def _head_is_plain(config) -> bool:
    """True when logits are just ``hidden @ W.T``: no soft-capping or scaling that the model's own head adds."""
    return not any(getattr(config, name, None) for name in ("final_logit_softcapping", "logit_scale"))


class AnswerLoss(torch.nn.Module):
    """The student as the trainer runs it: its body over the whole micro-batch, then the head and the loss
    only at the labelled positions. ``forward`` returns the summed token loss.

    ``autocast``: run the body's matmuls in this dtype (bf16-mixed); the head keeps its weights' precision.
    ``onednn``: the head's multiplies go through oneDNN (`use_fastest_cpu_gemm` routed the body's).
    It is one module so that DeepSpeed's engine, ZeRO-3's parameter gathering included, sees the whole step.
    """

    def __init__(self, student, autocast: torch.dtype | None = None, onednn: bool = False) -> None:
        super().__init__()
        self.student = student
        self.autocast = autocast
        self.onednn = onednn

    def _base(self):
        student = self.student
        return student.get_base_model() if hasattr(student, "get_base_model") else student

    def forward(self, inputs: dict, keep: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        base = self._base()
        device = keep.device
        with torch.autocast(
            device.type, dtype=self.autocast or torch.bfloat16, enabled=self.autocast is not None
        ):
            if not _head_is_plain(base.config):  # the model's own head, on the kept positions only
                if "attention_mask" in inputs:  # padded rows: keep indexes the flattened rows
                    logits = self.student(**inputs).logits
                    logits = logits.reshape(-1, logits.shape[-1])[keep]
                else:
                    logits = self.student(**inputs, logits_to_keep=keep).logits[0]
                return torch.nn.functional.cross_entropy(logits.float(), targets, reduction="sum")
            hidden = base.get_decoder()(**inputs).last_hidden_state
        hidden = hidden.reshape(-1, hidden.shape[-1])[keep]
        # Under ZeRO-3 the engine gathers this weight on first use in the forward (DeepSpeed's external
        # parameters: read here rather than in the head's own forward), since the engine runs this module.
        return linear_cross_entropy(hidden, base.get_output_embeddings().weight, targets, self.onednn)


def answer_loss(student, config: TrainConfig, device: torch.device) -> AnswerLoss:
    """The objective as ``config`` trains ``student`` on ``device``: the body under bf16 autocast for
    bf16-mixed where the device multiplies bf16; fp32 work on a CPU through its faster GEMM backend."""
    autocast = autocast_dtype(config.dtype, device)
    if config.dtype == "bf16":  # bf16 weights: no fp32 multiply to route
        return AnswerLoss(student, autocast)
    onednn = use_fastest_cpu_gemm(student, config.cpu_matmul, device, fp32_body=autocast is None)
    return AnswerLoss(student, autocast, onednn)


def to_device(batch: MicroBatch, device: torch.device) -> dict:
    moved = {}
    for key, value in batch.inputs.items():
        if isinstance(value, torch.Tensor) and (device.type == "cuda" or key not in _BOUNDS):
            value = value.to(device, non_blocking=True)
        moved[key] = value
    return moved


def summed_loss(objective, batch: MicroBatch, device: torch.device) -> torch.Tensor:
    """Sum of token losses over the batch's labels (a zero with a graph for an empty micro-batch).

    ``objective``: an `AnswerLoss`, or the DeepSpeed engine that wraps one.
    """
    loss = objective(to_device(batch, device), batch.keep.to(device), batch.targets.to(device))
    return loss if batch.label_tokens else loss * 0.0


@torch.no_grad()
def mean_loss(objective, batches: Iterable[MicroBatch], device: torch.device) -> float | None:
    """Token-weighted mean loss over ``batches`` (None when they hold no labels)."""
    was_training = objective.training
    objective.eval()
    total, count = 0.0, 0
    for batch in batches:
        if batch.label_tokens:
            total += float(summed_loss(objective, batch, device))
            count += batch.label_tokens
    objective.train(was_training)
    return total / count if count else None
