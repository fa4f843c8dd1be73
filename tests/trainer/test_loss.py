"""The chunked output-head loss: the same losses and gradients as full logits, at a fraction of the memory."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from distill.trainer import attention, loss
from distill.trainer.loss import AnswerLoss, linear_cross_entropy, summed_loss
from distill.trainer.packing import collate_packed
from distill.trainer.tokenize import Sample


def _full_logits_loss(student, batch) -> torch.Tensor:
    """The reference: the model's own forward, full logits for the whole row, cross-entropy at the labels."""
    logits = student(**batch.inputs).logits
    logits = logits.reshape(-1, logits.shape[-1])[batch.keep]
    return F.cross_entropy(logits.float(), batch.targets, reduction="sum")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_chunks_give_the_full_cross_entropy_and_its_gradients(monkeypatch, dtype):
    monkeypatch.setattr(loss, "_CHUNK_ELEMENTS", 1000 * 7)  # 64-row slices: 300 rows take five
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(300, 24, dtype=dtype, generator=generator, requires_grad=True)
    weight = torch.randn(1000, 24, dtype=dtype, generator=generator, requires_grad=True)
    targets = torch.randint(0, 1000, (300,), generator=generator)
    got = linear_cross_entropy(hidden, weight, targets) * 0.5  # a scale after it reaches the gradients
    got.backward()
    got_grads = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    expected = F.cross_entropy(hidden @ weight.T, targets, reduction="sum") * 0.5
    expected.backward()
    tolerance = dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got, expected, **tolerance)
    torch.testing.assert_close(got_grads[0], hidden.grad, **tolerance)
    torch.testing.assert_close(got_grads[1], weight.grad, **tolerance)


def test_no_gradient_work_without_grad():
    hidden = torch.randn(10, 8)
    weight = torch.randn(50, 8)
    targets = torch.randint(0, 50, (10,))
    with torch.no_grad():
        value = linear_cross_entropy(hidden, weight, targets)
    assert not value.requires_grad
    torch.testing.assert_close(value, F.cross_entropy(hidden @ weight.T, targets, reduction="sum"))


@pytest.mark.slow
def test_smollm2_losses_and_lora_gradients_match_full_logits(student_dir):
    """Real SmolLM2 weights, a packed row of answer-heavy samples: chunked == the model's full-logits loss."""
    from distill.trainer.config import TrainConfig
    from distill.trainer.model import add_lora, load_student

    rng = np.random.default_rng(0)
    samples = [Sample(rng.integers(3, 49152, size=n, dtype=np.int64), n // 3) for n in (200, 96, 340, 150)]
    batch = collate_packed(samples)
    config = TrainConfig(data=["unused"], lora_dropout=0.0)
    torch.manual_seed(0)
    student = add_lora(load_student(student_dir, "fp32", torch.device("cpu"), attention.register()), config)
    for module in student.modules():  # a trained-looking adapter: lora_B away from its zero start
        if hasattr(module, "lora_B"):
            torch.nn.init.normal_(module.lora_B["default"].weight, std=0.02)
    lora = [p for p in student.parameters() if p.requires_grad]

    full = _full_logits_loss(student, batch)
    full.backward()
    full_grads = [p.grad.clone() for p in lora]
    student.zero_grad()
    chunked = summed_loss(AnswerLoss(student), batch, torch.device("cpu"))
    chunked.backward()

    assert batch.label_tokens > 250
    assert float(chunked) == pytest.approx(float(full), rel=1e-5)
    # fp32 sums over hundreds of tokens in another order: compare each gradient as a whole.
    errors = [
        float((got - expected).norm() / expected.norm())
        for got, expected in zip([p.grad for p in lora], full_grads, strict=True)
    ]
    assert max(errors) < 1e-4


_MEASURE = textwrap.dedent(
    """
    import json, sys
    import numpy as np, torch
    import torch.nn.functional as F
    from distill.trainer import attention
    from distill.trainer.config import TrainConfig
    from distill.trainer.loss import AnswerLoss, summed_loss
    from distill.trainer.model import add_lora, load_student
    from distill.trainer.packing import collate_packed
    from distill.trainer.tokenize import Sample

    mode, model_dir = sys.argv[1], sys.argv[2]
    student = add_lora(load_student(model_dir, "fp32", torch.device("cpu"), attention.register()),
                       TrainConfig(data=["unused"]))
    objective = AnswerLoss(student)
    rng = np.random.default_rng(0)
    optimizer = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=1e-4)
    losses = []
    for step in range(3):
        batch = collate_packed([Sample(rng.integers(3, 49152, size=1000, dtype=np.int64), 10) for _ in range(4)])
        if mode == "full":
            logits = student(**batch.inputs).logits
            value = F.cross_entropy(logits.reshape(-1, logits.shape[-1])[batch.keep], batch.targets,
                                    reduction="sum")
        else:
            value = summed_loss(objective, batch, torch.device("cpu"))
        (value / batch.label_tokens).backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(value) / batch.label_tokens)
    # VmHWM: this process's own peak (ru_maxrss would also count the parent's resident set at fork)
    peak_kib = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
    print(json.dumps({"peak_mib": peak_kib / 1024, "losses": losses}))
    """
)


def test_measured_peak_memory_drops_on_a_few_steps(tiny_model):
    """Three steps on 4000-token packed rows, almost all of them labels: the full-vocabulary logits the
    model's own forward would hold (4000 × 49k fp32, with their softmax and gradient) are never made."""
    runs = {}
    for mode in ("full", "chunked"):
        done = subprocess.run(
            [sys.executable, "-c", _MEASURE, mode, str(tiny_model)],
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        )
        runs[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    assert runs["chunked"]["losses"] == pytest.approx(runs["full"]["losses"], rel=1e-5)
    logits_mib = 4000 * 49152 * 4 / 2**20  # one copy of the full logits: 750 MiB
    assert runs["chunked"]["peak_mib"] < runs["full"]["peak_mib"] - logits_mib, runs
