"""`lora_layers`: LoRA on the last N layers only, and the backward pass stops below them (why it is cheaper)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from distill.trainer import attention
from distill.trainer.config import TrainConfig
from distill.trainer.loss import AnswerLoss, summed_loss
from distill.trainer.model import add_lora, load_student
from distill.trainer.packing import collate_packed
from distill.trainer.tokenize import Sample

from distill.errors import UserError


def _student(model_dir, **settings):
    config = TrainConfig(data=["unused"], **settings)
    return add_lora(load_student(model_dir, "fp32", torch.device("cpu"), attention.register()), config)


def _trained_layers(student) -> set[str]:
    """The indices of the layers whose parameters train (the adapter's)."""
    return {
        name.split(".layers.")[1].split(".")[0] for name, p in student.named_parameters() if p.requires_grad
    }


def test_lora_on_the_last_layer_only_trains_it_and_backward_stops_below(tiny_model):
    student = _student(tiny_model, lora_layers=1)
    assert _trained_layers(student) == {"1"}  # of layers 0 and 1

    layers = student.get_base_model().model.layers
    needs_grad = {}
    for index, layer in enumerate(layers):
        layer.register_forward_hook(
            lambda module, args, out, index=index: needs_grad.update({index: out[0].requires_grad})
        )
    rng = np.random.default_rng(0)
    vocab = student.get_base_model().config.vocab_size
    batch = collate_packed([Sample(rng.integers(3, vocab, size=n, dtype=np.int64), n // 3) for n in (40, 25)])
    summed_loss(AnswerLoss(student), batch, torch.device("cpu")).backward()
    assert needs_grad == {0: False, 1: True}  # nothing below the adapter is kept for backward
    trainable = {name: p for name, p in student.named_parameters() if p.requires_grad}
    assert all(p.grad is not None for p in trainable.values())
    # lora_B starts at zero, so only its own gradients are non-zero after one backward
    assert all(p.grad.abs().sum() > 0 for name, p in trainable.items() if "lora_B" in name)

    assert _trained_layers(_student(tiny_model)) == {"0", "1"}  # without the setting: every layer


def test_more_lora_layers_than_the_student_has_is_refused(tiny_model):
    with pytest.raises(UserError, match="lora_layers: 3 is more than the student's 2 layers"):
        _student(tiny_model, lora_layers=3)
