"""Process-group facts for the training loop: which rank am I, how many are we, and a few collectives.

Single-process runs never touch torch.distributed. DeepSpeed runs (started by `trainer.launch` through
torchrun) initialise it through DeepSpeed: gloo on the CPU, nccl on GPUs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from distill.trainer.student import cache_root


def extensions_dir() -> str:
    """Where DeepSpeed JIT-compiles its ops: under our cache, not a stray ~/.cache/torch_extensions."""
    return os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(cache_root() / "torch_extensions"))


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    deepspeed: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over ranks (the values themselves on one rank)."""
        if self.world == 1:
            return values
        tensor = torch.tensor(values, dtype=torch.float64)
        torch.distributed.all_reduce(tensor)
        return tensor.tolist()

    def any(self, flag: bool) -> bool:
        return bool(self.sum([float(flag)])[0]) if self.world > 1 else flag


def setup(use_deepspeed: bool, device: torch.device) -> Dist:
    if not use_deepspeed:
        return Dist()
    extensions_dir()
    import deepspeed

    deepspeed.init_distributed(dist_backend="nccl" if device.type == "cuda" else "gloo")
    return Dist(
        rank=torch.distributed.get_rank(),
        world=torch.distributed.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        deepspeed=True,
    )


def teardown(dist: Dist) -> None:
    if dist.deepspeed and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
