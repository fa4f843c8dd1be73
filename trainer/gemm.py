"""fp32 matrix multiplies on the CPU through whichever of torch's two CPU backends is faster on this CPU.

torch multiplies fp32 matrices on the CPU with its BLAS (MKL's sgemm in the PyPI wheels). MKL chooses its
kernels by CPU vendor: on AMD CPUs it runs its AVX2 code even where the CPU has AVX-512. oneDNN, torch's other
CPU backend, chooses by instruction set. On a 2-core AMD EPYC with AVX-512 the fp32 GEMMs of SmolLM2's layers
measured ~210 GFLOPS through MKL and ~480 through oneDNN. Both compute in fp32 (oneDNN's default math mode
is strict fp32): which one runs changes the summation order, not the precision.

Most of a LoRA step is the frozen base weights: ``x @ W.T`` forward and ``dy @ W`` backward (no weight
gradient). `use_fastest_cpu_gemm` sends those, and the LoRA matrices' own, through oneDNN when it measured
faster here, and tells the chunked loss to do the same with the output head (fp32 in bf16-mixed too).
"""

from __future__ import annotations

import functools
import time

import torch

from distill.errors import UserError

# oneDNN must beat the BLAS by this much for "auto" to switch: a tie is not worth a different summation order.
_MIN_GAIN = 1.2


def onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ weight.T + bias`` through oneDNN; any strides (``weight`` may be a transposed view).

    The op is the one torch's own compiler emits for linear layers on the CPU (``torch._inductor``).
    """
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


def onednn_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _fastest_seconds(multiply) -> float:
    multiply()  # the first call builds the kernel
    times = []
    for _ in range(5):
        started = time.perf_counter()
        multiply()
        times.append(time.perf_counter() - started)
    return min(times)


@functools.cache
def onednn_is_faster() -> bool:
    """Time one GEMM of a decoder layer's size both ways (~50 ms) and say whether oneDNN wins clearly."""
    if not onednn_available():
        return False
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(512, 576, generator=generator)
    weight = torch.randn(1536, 576, generator=generator)
    blas = _fastest_seconds(lambda: x @ weight.T)
    onednn = _fastest_seconds(lambda: onednn_linear(x, weight))
    return onednn * _MIN_GAIN < blas


class _Linear(torch.autograd.Function):
    """``x @ W.T + b`` with oneDNN's multiplies for the output and the input's gradient.

    A weight's own gradient (the LoRA matrices') stays with torch's ``mm``: for those thin shapes oneDNN was
    no faster.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x if weight.requires_grad else None, weight)
        ctx.bias_grad = bias is not None and bias.requires_grad
        return onednn_linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad_x = onednn_linear(grad_out, weight.T) if ctx.needs_input_grad[0] else None
        rows = grad_out.reshape(-1, grad_out.shape[-1])
        grad_weight = rows.T @ x.reshape(-1, x.shape[-1]) if ctx.needs_input_grad[1] else None
        grad_bias = rows.sum(0) if ctx.bias_grad else None
        return grad_x, grad_weight, grad_bias


def _linear_forward(module: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    if torch.is_autocast_enabled(x.device.type) or x.dtype != torch.float32:
        return torch.nn.functional.linear(x, module.weight, module.bias)  # autocast picks its own kernels
    return _Linear.apply(x, module.weight, module.bias)


def route_linears(model: torch.nn.Module) -> int:
    """Run every fp32 ``nn.Linear`` of ``model`` (base weights and LoRA matrices) through oneDNN; returns how
    many."""
    routed = 0
    for module in model.modules():
        if type(module) is torch.nn.Linear and module.weight.dtype == torch.float32:
            module.forward = functools.partial(_linear_forward, module)
            routed += 1
    return routed


def use_fastest_cpu_gemm(model: torch.nn.Module, setting: str, device: torch.device, fp32_body: bool) -> bool:
    """Whether fp32 multiplies on this device go through oneDNN, as ``setting`` and this CPU call for it.

    If so, and ``fp32_body`` (no bf16 autocast: under it torch already runs the body through oneDNN in bf16),
    ``model``'s linear layers are routed. The chunked loss's head, fp32 under both fp32 and bf16-mixed,
    follows the returned answer.
    """
    if device.type != "cpu" or setting == "blas":
        return False
    if setting == "onednn" and not onednn_available():
        raise UserError("cpu_matmul: 'onednn' was asked for but this torch build has no oneDNN linear op")
    if setting == "auto" and not onednn_is_faster():
        return False
    if fp32_body:
        route_linears(model)
    return True
