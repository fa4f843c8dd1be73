"""The saved-adapter check catches what a broken ZeRO-3 save produces: empty, misshapen, missing, all-zero."""

from __future__ import annotations

import pytest
import torch
from distill.trainer.adapter import IncompleteAdapterError, verify_adapter
from safetensors.torch import save_file

SHAPES = {
    "base_model.model.layers.0.q_proj.lora_A.weight": (4, 8),
    "base_model.model.layers.0.q_proj.lora_B.weight": (8, 4),
}


def _write(directory, tensors):
    directory.mkdir(exist_ok=True)
    save_file(tensors, str(directory / "adapter_model.safetensors"))
    return directory


def test_a_complete_adapter_passes(tmp_path):
    adapter = _write(
        tmp_path / "ok",
        {
            "base_model.model.layers.0.q_proj.lora_A.weight": torch.randn(4, 8),
            "base_model.model.layers.0.q_proj.lora_B.weight": torch.randn(8, 4),
        },
    )
    assert verify_adapter(adapter, SHAPES, trained=True) == 2


@pytest.mark.parametrize(
    "a, b, message",
    [
        (torch.randn(4, 8), torch.empty(0), "is empty"),
        (torch.randn(4, 8), torch.randn(4, 8), "has shape (4, 8), expected (8, 4)"),
        (torch.randn(4, 8), torch.zeros(8, 4), "every lora_B matrix is zero"),
        (torch.full((4, 8), float("nan")), torch.randn(8, 4), "NaN or inf"),
    ],
)
def test_defects_fail_loudly(tmp_path, a, b, message):
    adapter = _write(
        tmp_path / "bad",
        {
            "base_model.model.layers.0.q_proj.lora_A.weight": a,
            "base_model.model.layers.0.q_proj.lora_B.weight": b,
        },
    )
    with pytest.raises(IncompleteAdapterError) as caught:
        verify_adapter(adapter, SHAPES, trained=True)
    assert message in str(caught.value)


def test_missing_tensors_and_files_fail(tmp_path):
    adapter = _write(tmp_path / "half", {"base_model.model.layers.0.q_proj.lora_A.weight": torch.randn(4, 8)})
    with pytest.raises(IncompleteAdapterError, match="1 tensor\\(s\\) missing"):
        verify_adapter(adapter, SHAPES, trained=False)
    (tmp_path / "none").mkdir()
    with pytest.raises(IncompleteAdapterError, match="was not written"):
        verify_adapter(tmp_path / "none", SHAPES, trained=False)
