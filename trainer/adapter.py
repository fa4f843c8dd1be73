"""Save the trained adapter, prove it is complete, and optionally merge it into a full model.

Under ZeRO-3 each process holds a slice of every parameter; saving without gathering writes empty tensors
that load without complaint and do nothing. So the adapter is gathered before saving, and the file written
is read back and checked against the model's shapes: a missing, empty, misshapen or non-finite tensor, or an
adapter that never moved from its zero start, is an error.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

ADAPTER_WEIGHTS = "adapter_model.safetensors"


class IncompleteAdapterError(RuntimeError):
    """The saved adapter is not what was trained: a bug to fix, not a user error."""


def expected_shapes(peft_model) -> dict[str, tuple[int, ...]]:
    """Saved-key → shape for every LoRA matrix, from the layers' recorded sizes (valid even when partitioned)."""
    from peft.tuners.lora import LoraLayer

    shapes = {}
    for name, module in peft_model.named_modules():
        if isinstance(module, LoraLayer):
            for adapter, rank in module.r.items():
                prefix = name.replace(f".{adapter}", "")
                shapes[f"{prefix}.lora_A.weight"] = (rank, module.in_features)
                shapes[f"{prefix}.lora_B.weight"] = (module.out_features, rank)
    return shapes


def _gathered(peft_model, zero3: bool):
    if not zero3:
        return contextlib.nullcontext()
    import deepspeed

    parameters = [p for p in peft_model.parameters() if p.requires_grad]
    return deepspeed.zero.GatheredParameters(parameters, modifier_rank=None)


def save_adapter(peft_model, directory: Path, *, rank: int, zero3: bool, base_model_dir: Path) -> None:
    """All ranks must call this under ZeRO-3 (gathering is collective); rank 0 writes."""
    with _gathered(peft_model, zero3):
        if rank == 0:
            directory.mkdir(parents=True, exist_ok=True)
            peft_model.peft_config["default"].base_model_name_or_path = str(base_model_dir)
            peft_model.save_pretrained(str(directory), safe_serialization=True)


def verify_adapter(directory: Path, shapes: dict[str, tuple[int, ...]], *, trained: bool) -> int:
    """Read the saved adapter back; raise IncompleteAdapterError on any defect. Returns the tensor count."""
    from safetensors.torch import load_file

    path = directory / ADAPTER_WEIGHTS
    if not path.is_file():
        raise IncompleteAdapterError(f"{path}: the adapter was not written")
    saved = {key.replace("base_model.model.", "", 1): tensor for key, tensor in load_file(str(path)).items()}
    wanted = {key.replace("base_model.model.", "", 1): shape for key, shape in shapes.items()}
    problems = []
    missing = sorted(set(wanted) - set(saved))
    if missing:
        problems.append(f"{len(missing)} tensor(s) missing, e.g. {missing[0]}")
    for key, tensor in saved.items():
        if tensor.numel() == 0:
            problems.append(f"{key} is empty (shape {tuple(tensor.shape)})")
        elif key in wanted and tuple(tensor.shape) != wanted[key]:
            problems.append(f"{key} has shape {tuple(tensor.shape)}, expected {wanted[key]}")
        elif not torch.isfinite(tensor).all():
            problems.append(f"{key} holds NaN or inf")
    lora_b = [tensor for key, tensor in saved.items() if "lora_B" in key and tensor.numel()]
    if trained and lora_b and all(not tensor.any() for tensor in lora_b):
        problems.append("every lora_B matrix is zero: the adapter never learnt anything")
    if problems:
        raise IncompleteAdapterError(f"{path}: saved adapter is incomplete: " + "; ".join(problems[:5]))
    return len(saved)


def merge_adapter(base_model_dir: Path, adapter_dir: Path, merged_dir: Path, dtype: torch.dtype) -> Path:
    """Base + adapter folded into plain weights (what vLLM or llama.cpp can serve without LoRA support)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(base_model_dir, dtype=dtype)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(str(merged_dir), safe_serialization=True)
    AutoTokenizer.from_pretrained(base_model_dir).save_pretrained(str(merged_dir))
    return merged_dir
