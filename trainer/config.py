"""`distill train` settings: one pydantic model, the seed article's values as defaults.

Field names follow LLaMA-Factory's where the seed uses them (``lora_rank``, ``lora_alpha``, ``val_size``,
``eval_steps``) so a reader of the article recognises them.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

from distill.trainer.student import DEFAULT_STUDENT
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from distill.config_files import load_config

SHIPPED_CONFIG = resources.files("distill.configs").joinpath("train_lora.yaml")


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # What to train on: engine run directories (accepted-*.jsonl), record JSONL, alpaca or sharegpt exports.
    data: list[str] = Field(min_length=1)
    # An independent evaluation set (never split from `data`); refused if it shares ids with training.
    eval_file: str | None = None
    output_dir: str = "runs/train"
    base_model: str = DEFAULT_STUDENT
    # answer: the target is the record's `output`; thinking: `full_output` (【思考】…【答案】…).
    format: Literal["answer", "thinking"] = "answer"

    lora_rank: int = Field(32, ge=1)
    lora_alpha: float = Field(64, gt=0)
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    # "all" = every linear layer except the output head (LLaMA-Factory's `lora_target: all`), or module names.
    lora_target: list[str] | Literal["all"] = "all"

    learning_rate: float = Field(5e-5, gt=0)
    epochs: float = Field(2, gt=0)
    per_device_batch_size: int = Field(2, ge=1)
    gradient_accumulation_steps: int = Field(8, ge=1)
    weight_decay: float = Field(0.1, ge=0)
    lr_scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    max_grad_norm: float = Field(1.0, ge=0)
    # Stop after this many optimizer steps (the schedule still spans all epochs); None = train every epoch.
    max_steps: int | None = Field(None, ge=1)

    val_size: float = Field(0.05, ge=0, lt=1)
    eval_steps: int = Field(100, ge=1)
    max_length: int = Field(1024, ge=8)
    overlong: Literal["truncate", "drop"] = "truncate"
    # Padding-free packing: each micro-batch concatenates samples up to `token_budget` tokens.
    packing: bool = True
    token_budget: int = Field(2048, ge=8)

    seed: int = 42
    save_steps: int = Field(100, ge=1)
    save_total_limit: int = Field(2, ge=1)
    resume: bool = False
    merge: bool = False
    # fp32: exact. bf16: base weights stored in bf16 (half the memory). bf16-mixed: fp32 weights, matmuls under
    # bf16 autocast (fast where the chip has bf16 units: this CPU's avx512_bf16, any recent GPU).
    dtype: Literal["fp32", "bf16", "bf16-mixed"] = "fp32"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    logging_steps: int = Field(1, ge=1)

    # Multi-process: a DeepSpeed JSON config and how many processes per node (torchrun launches them).
    deepspeed: str | None = None
    nproc: int = Field(1, ge=1)
    nnodes: int = Field(1, ge=1)
    node_rank: int = Field(0, ge=0)
    master_addr: str = "127.0.0.1"
    master_port: int | None = Field(None, ge=1, le=65535)

    @field_validator("data", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("lora_target", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str) and value != "all":
            return [name.strip() for name in value.split(",") if name.strip()]
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.token_budget < self.max_length and self.packing:
            raise ValueError(
                f"token_budget ({self.token_budget}) must be at least max_length ({self.max_length})"
            )
        if self.node_rank >= self.nnodes:
            raise ValueError(f"node_rank {self.node_rank} must be below nnodes {self.nnodes}")
        if (self.nproc > 1 or self.nnodes > 1) and not self.deepspeed:
            raise ValueError(
                "several processes need a DeepSpeed config: add --deepspeed configs/ds_zero2.json"
            )
        return self

    @property
    def output_path(self) -> Path:
        return Path(self.output_dir)


def load_train_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """The shipped defaults (configs/train_lora.yaml) when no file is given, with flags on top."""
    if path is None and SHIPPED_CONFIG.is_file():
        path = SHIPPED_CONFIG
    return load_config(TrainConfig, path, overrides)
