"""Load the student (tokenizer + weights) and put a LoRA adapter on it."""

from __future__ import annotations

from pathlib import Path

import torch
from distill.trainer.config import TrainConfig

from distill.errors import UserError

# Storage dtype of the base weights per `dtype` setting; bf16-mixed keeps fp32 weights and autocasts.
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "bf16-mixed": torch.float32}


def bf16_units(device: torch.device) -> bool:
    """Whether ``device`` multiplies bf16 in hardware: a CUDA GPU that supports it, or a CPU with AVX512-BF16
    or AMX. Elsewhere torch emulates bf16 matmuls, measured 10-100x slower than fp32 on an AVX2 CPU."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # the checks torch's own compiler uses
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


def autocast_dtype(setting: str, device: torch.device) -> torch.dtype | None:
    """The dtype the body's matmuls run in: bf16 under bf16-mixed where the device has bf16 units, else none
    (fp32), since bf16-mixed exists to be faster and emulated bf16 is far slower than fp32."""
    return torch.bfloat16 if setting == "bf16-mixed" and bf16_units(device) else None


def pick_device(setting: str) -> torch.device:
    if setting == "cuda" and not torch.cuda.is_available():
        raise UserError("device: 'cuda' was asked for but torch sees no CUDA device")
    if setting == "auto":
        setting = "cuda" if torch.cuda.is_available() else "cpu"
    if setting == "cuda":
        import os

        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)  # before NCCL starts: each rank talks from its own GPU
        return device
    return torch.device("cpu")


def load_tokenizer(model_dir: Path):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    except (OSError, ValueError) as exc:
        raise UserError(f"{model_dir}: cannot load the student's tokenizer: {exc}") from None
    if not tokenizer.chat_template:
        raise UserError(
            f"{model_dir}: the student's tokenizer has no chat template; train an instruct model "
            "or add a chat_template.jinja to the model directory"
        )
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_student(model_dir: Path, dtype: str, device: torch.device, attention: str):
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(
            model_dir, dtype=DTYPES[dtype], attn_implementation=attention
        )
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"{model_dir}: cannot load the student model: {exc}") from None
    model.config.use_cache = False
    return model.to(device)


def keep_head_in_fp32(model) -> None:
    """Under bf16 autocast, run the output head in fp32 anyway (the trainer's own loss already does: this is
    for a model whose head `AnswerLoss` leaves to the model, and for any caller that runs the model itself).

    bf16 keeps about three significant digits: logits near 20 come out ±0.1, an error the loss would carry
    straight through. The head, a fifth of the work, stays exact; the body's bf16 still leaves bf16-mixed losses
    ~0.07 above fp32's on SmolLM2 (0.45 vs 0.38 on the same batches, docs/trainer.md).
    """
    head = model.get_output_embeddings()
    bf16_forward = head.forward

    def fp32_forward(hidden: torch.Tensor) -> torch.Tensor:
        with torch.autocast(hidden.device.type, enabled=False):
            return bf16_forward(hidden.float())

    head.forward = fp32_forward


def add_lora(model, config: TrainConfig):
    """The base model as ``config`` trains it: a LoRA adapter on it and, under bf16-mixed, an exact head."""
    from peft import LoraConfig, get_peft_model

    if config.dtype == "bf16-mixed":
        keep_head_in_fp32(model)

    targets = linear_suffixes(model) if config.lora_target == "all" else config.lora_target
    layers = model.config.num_hidden_layers
    if config.lora_layers is not None and config.lora_layers > layers:
        raise UserError(f"lora_layers: {config.lora_layers} is more than the student's {layers} layers")
    lora = LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=targets,
        layers_to_transform=None
        if config.lora_layers is None
        else list(range(layers - config.lora_layers, layers)),
        task_type="CAUSAL_LM",
        bias="none",
    )
    try:
        # Adapter weights stay fp32 even on a bf16 base (PEFT's autocast_adapter_dtype): small and exact.
        return get_peft_model(model, lora)
    except ValueError as exc:
        raise UserError(f"lora_target: {exc}") from None


def linear_suffixes(model) -> list[str]:
    """Names of every linear layer but the output head: PEFT's "all-linear", written out as the short
    names (q_proj, ...) that vLLM's LoRA loader and LLaMA-Factory expect in adapter_config.json."""
    head = model.get_output_embeddings()
    return sorted(
        {
            name.rsplit(".", 1)[-1]
            for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and module is not head
        }
    )


def trainable_parameters(model) -> list[torch.nn.Parameter]:
    return [parameter for parameter in model.parameters() if parameter.requires_grad]
