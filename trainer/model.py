"""Load the student (tokenizer + weights) and put a LoRA adapter on it."""

from __future__ import annotations

from pathlib import Path

import torch

from distill.errors import UserError
from trainer.config import TrainConfig

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


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
        raise UserError(f"{model_dir}: the student's tokenizer has no chat template; train an instruct model "
                        "or add a chat_template.jinja to the model directory")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_student(model_dir: Path, dtype: str, device: torch.device, attention: str):
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=DTYPES[dtype], attn_implementation=attention)
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"{model_dir}: cannot load the student model: {exc}") from None
    model.config.use_cache = False
    return model.to(device)


def add_lora(model, config: TrainConfig):
    from peft import LoraConfig, get_peft_model

    targets = linear_suffixes(model) if config.lora_target == "all" else config.lora_target
    lora = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=targets, task_type="CAUSAL_LM", bias="none")
    try:
        # Adapter weights stay fp32 even on a bf16 base (PEFT's autocast_adapter_dtype): small and exact.
        return get_peft_model(model, lora)
    except ValueError as exc:
        raise UserError(f"lora_target: {exc}") from None


def linear_suffixes(model) -> list[str]:
    """Names of every linear layer but the output head: PEFT's "all-linear", written out as the short
    names (q_proj, ...) that vLLM's LoRA loader and LLaMA-Factory expect in adapter_config.json."""
    head = model.get_output_embeddings()
    return sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                   if isinstance(module, torch.nn.Linear) and module is not head})


def trainable_parameters(model) -> list[torch.nn.Parameter]:
    return [parameter for parameter in model.parameters() if parameter.requires_grad]
