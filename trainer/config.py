"""`distill train` settings: one pydantic model, the seed article's values as defaults.

Field names follow LLaMA-Factory's where the seed uses them (``lora_rank``, ``lora_alpha``, ``val_size``,
``eval_steps``) so a reader of the article recognises them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from distill.configs import local_or_bundled
from distill.trainer.student import DEFAULT_STUDENT
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class TrainConfig(BaseModel):
    """Every `distill train` setting; the defaults are the seed's and live only here (`--help` shows them)."""

    model_config = ConfigDict(extra="forbid")

    data: list[str] = Field(
        min_length=1,
        description="what to train on: run directory, records JSONL or alpaca/sharegpt export (repeatable)",
    )
    eval_file: str | None = Field(
        default=None,
        description="an independent eval set, never split from the data (refused if it shares ids with it)",
    )
    output_dir: str = Field(default="runs/train", description="where the adapter, checkpoints and logs go")
    base_model: str = Field(
        default=DEFAULT_STUDENT, description="student: alias, HF model directory or .gguf"
    )
    format: Literal["answer", "thinking"] = Field(
        default="answer",
        description="answer: learn the record's output; thinking: its full_output (【思考】…【答案】…)",
    )

    lora_rank: int = Field(32, ge=1, description="LoRA rank")
    lora_alpha: float = Field(64, gt=0, description="LoRA alpha")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="LoRA dropout")
    lora_target: list[str] | Literal["all"] = Field(
        default="all",
        description="all: every linear layer but the output head (LLaMA-Factory's `lora_target: all`), or "
        "comma-separated module names",
    )
    lora_layers: int | None = Field(
        default=None,
        ge=1,
        description="LoRA on the last N transformer layers only (null: every layer); the backward pass then "
        "stops below them, so a step costs less",
    )

    learning_rate: float = Field(
        5e-5, gt=0, description="peak learning rate (below plain SFT's 2e-4: don't overfit the teacher)"
    )
    epochs: float = Field(2, gt=0, description="epochs over the training data")
    per_device_batch_size: int = Field(2, ge=1, description="samples per micro-batch per process")
    gradient_accumulation_steps: int = Field(8, ge=1, description="micro-batches per optimizer step")
    weight_decay: float = Field(0.1, ge=0, description="AdamW weight decay")
    lr_scheduler: Literal["cosine", "linear", "constant"] = Field(
        "cosine", description="learning-rate schedule"
    )
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="share of the steps spent warming up")
    max_grad_norm: float = Field(1.0, ge=0, description="gradient clipping norm")
    max_steps: int | None = Field(
        None,
        ge=1,
        description="stop after this many optimizer steps; the schedule still spans every epoch "
        "(default: train every epoch)",
    )

    val_size: float = Field(0.05, ge=0, lt=1, description="share of ids held out for the validation loss")
    eval_steps: int = Field(100, ge=1, description="validation loss every N steps")
    max_length: int = Field(1024, ge=8, description="longest sample in tokens")
    overlong: Literal["truncate", "drop"] = Field(
        "truncate", description="what happens to a sample over max_length (both are counted)"
    )
    packing: bool = Field(
        True, description="padding-free packing: samples concatenated up to token_budget per micro-batch"
    )
    token_budget: int = Field(
        2048, ge=8, description="tokens per packed micro-batch (2048: the seed's batch 2 × max_length 1024)"
    )

    seed: int = Field(42, description="seed for the split, the order and LoRA's initialisation")
    save_steps: int = Field(100, ge=1, description="checkpoint every N steps")
    save_total_limit: int = Field(2, ge=1, description="checkpoints kept")
    resume: bool = Field(False, description="continue from the newest checkpoint")
    merge: bool = Field(False, description="also write the base + adapter merged weights")
    dtype: Literal["fp32", "bf16", "bf16-mixed"] = Field(
        "fp32",
        description="fp32: exact; bf16: base weights in bf16 (half the memory); bf16-mixed: fp32 weights, "
        "bf16 autocast matmuls, fp32 head (fast where the chip has bf16 units)",
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="where to train")
    cpu_matmul: Literal["auto", "onednn", "blas"] = Field(
        "auto",
        description="fp32 matrix multiplies on a CPU: auto times torch's BLAS (MKL) against oneDNN once and "
        "uses oneDNN where it is clearly faster (AMD CPUs with AVX-512); onednn or blas forces one",
    )
    logging_steps: int = Field(1, ge=1, description="log every N steps")

    deepspeed: str | None = Field(
        None,
        description="DeepSpeed JSON config: a file, or a bundled one (configs/ds_zero2.json, ds_zero3.json)",
    )
    nproc: int = Field(1, ge=1, description="processes on this node, launched by torchrun (needs deepspeed)")
    nnodes: int = Field(1, ge=1, description="nodes in the job")
    node_rank: int = Field(0, ge=0, description="this node's rank")
    master_addr: str = Field("127.0.0.1", description="address of node 0")
    master_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="port on node 0 (default: a free port on one node, 29500 on several)",
    )

    @field_validator("data", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("deepspeed")
    @classmethod
    def _local_or_bundled(cls, value: str | None) -> str | None:
        return None if value is None else str(local_or_bundled(value))

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
