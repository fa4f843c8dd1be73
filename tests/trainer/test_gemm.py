"""fp32 multiplies through oneDNN: the same outputs, gradients and SmolLM2 losses as torch's BLAS."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from distill.trainer import attention
from distill.trainer.gemm import onednn_available, route_linears, use_fastest_cpu_gemm
from distill.trainer.loss import AnswerLoss, summed_loss
from distill.trainer.packing import collate_packed
from distill.trainer.tokenize import Sample

from distill.errors import UserError

needs_onednn = pytest.mark.skipif(not onednn_available(), reason="torch built without oneDNN's linear op")


@needs_onednn
@pytest.mark.parametrize("trainable", [False, True])
def test_routed_linear_matches_torch_in_value_and_gradients(trainable):
    generator = torch.Generator().manual_seed(0)
    layer = torch.nn.Linear(96, 40)
    layer.requires_grad_(trainable)
    x = torch.randn(3, 70, 96, generator=generator, requires_grad=True)
    upstream = torch.randn(3, 70, 40, generator=generator)

    def run() -> list[torch.Tensor]:
        x.grad = layer.weight.grad = layer.bias.grad = None
        out = layer(x)
        out.backward(upstream)
        return [out.detach(), x.grad, layer.weight.grad, layer.bias.grad]

    expected = run()
    assert route_linears(layer) == 1
    got = run()
    assert layer.forward.func.__name__ == "_linear_forward"  # the routed path ran, not nn.Linear's own
    for value, reference in zip(got, expected, strict=True):
        if reference is None:
            assert value is None
        else:
            torch.testing.assert_close(value, reference, rtol=1e-5, atol=1e-5)


def test_only_fp32_cpu_work_is_routed():
    layer = torch.nn.Linear(8, 8)
    assert not use_fastest_cpu_gemm(layer, "onednn", torch.device("cuda"), fp32_body=True)
    assert not use_fastest_cpu_gemm(layer, "blas", torch.device("cpu"), fp32_body=True)
    if not onednn_available():
        with pytest.raises(UserError, match="cpu_matmul: 'onednn'"):
            use_fastest_cpu_gemm(layer, "onednn", torch.device("cpu"), fp32_body=True)
        return
    # bf16 autocast runs the body: only the (fp32) head of the loss goes through oneDNN
    assert use_fastest_cpu_gemm(layer, "onednn", torch.device("cpu"), fp32_body=False)
    assert "forward" not in vars(layer)  # nn.Linear's own forward, untouched
    assert use_fastest_cpu_gemm(layer, "onednn", torch.device("cpu"), fp32_body=True)
    assert "forward" in vars(layer)


@needs_onednn
@pytest.mark.slow
def test_smollm2_losses_and_lora_gradients_match_the_blas_path(student_dir):
    """Real SmolLM2 weights, a packed row of four samples: the loss and every LoRA gradient through oneDNN
    equal torch's default path (MKL) up to fp32 summation order."""
    from distill.trainer.config import TrainConfig
    from distill.trainer.model import add_lora, load_student

    rng = np.random.default_rng(0)
    batch = collate_packed(
        [Sample(rng.integers(3, 49152, size=n, dtype=np.int64), n // 3) for n in (200, 96, 340, 150)]
    )
    torch.manual_seed(0)
    student = add_lora(
        load_student(student_dir, "fp32", torch.device("cpu"), attention.register()),
        TrainConfig(data=["unused"]),
    )
    for module in student.modules():  # a trained-looking adapter: lora_B away from its zero start
        if hasattr(module, "lora_B"):
            torch.nn.init.normal_(module.lora_B["default"].weight, std=0.02)
    lora = [p for p in student.parameters() if p.requires_grad]

    def loss_and_grads(onednn: bool) -> tuple[float, list[torch.Tensor]]:
        student.zero_grad()
        value = summed_loss(AnswerLoss(student, onednn=onednn), batch, torch.device("cpu"))
        value.backward()
        return float(value.detach()), [p.grad.clone() for p in lora]

    blas_loss, blas_grads = loss_and_grads(False)
    routed = route_linears(student)
    onednn_loss, onednn_grads = loss_and_grads(True)

    assert routed == 30 * 7 * 3 + 1  # each layer's 7 projections with their LoRA A and B, and the head
    assert onednn_loss == pytest.approx(blas_loss, rel=1e-5)
    errors = [
        float((got - expected).norm() / expected.norm())
        for got, expected in zip(onednn_grads, blas_grads, strict=True)
    ]
    assert max(errors) < 1e-4
    assert all(bool(g.abs().sum() > 0) for g in onednn_grads)
