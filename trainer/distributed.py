"""Process-group facts for the training loop: which rank am I, how many are we, and a few collectives.

Single-process runs never touch torch.distributed. DeepSpeed runs (started by `distill.trainer.launch` through
torchrun) initialise it through DeepSpeed: gloo on the CPU, nccl on GPUs. A collective runs on the device its
backend accepts: NCCL takes CUDA tensors only, gloo takes CPU tensors.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
from distill.trainer.student import cache_root


def extensions_dir() -> str:
    """Where DeepSpeed JIT-compiles its ops: under our cache, not a stray ~/.cache/torch_extensions."""
    return os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(cache_root() / "torch_extensions"))


def backend_for(device: torch.device) -> str:
    """The process-group backend for training on ``device``."""
    return "nccl" if device.type == "cuda" else "gloo"


def collective_device(backend: str, device: torch.device) -> torch.device:
    """Where a tensor must live to be reduced by ``backend``: this rank's GPU under NCCL, else the CPU."""
    if backend.lower() == "nccl":
        if device.type != "cuda":
            raise ValueError(f"the nccl backend reduces CUDA tensors only; this rank trains on {device}")
        return device
    return torch.device("cpu")


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    deepspeed: bool = False
    # Where `sum` puts its tensor: the device the process group's backend reduces on.
    reduce_on: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over ranks (the values themselves without a process group)."""
        if not self.deepspeed:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=self.reduce_on)
        torch.distributed.all_reduce(tensor)
        return tensor.tolist()

    def any(self, flag: bool) -> bool:
        return bool(self.sum([float(flag)])[0])


def setup(use_deepspeed: bool, device: torch.device) -> Dist:
    if not use_deepspeed:
        return Dist()
    extensions_dir()
    import deepspeed

    deepspeed.init_distributed(dist_backend=backend_for(device))
    return Dist(
        rank=torch.distributed.get_rank(),
        world=torch.distributed.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        deepspeed=True,
        reduce_on=collective_device(torch.distributed.get_backend(), device),
    )


def teardown(dist: Dist) -> None:
    if dist.deepspeed and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
