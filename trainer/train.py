"""`run_training(config) -> adapter dir`: the one entry point of the trainer, for `distill train` and `distill run`.

One process trains here. With a DeepSpeed config and no torchrun around it, the ranks are launched
(`distill.trainer.launch`) and this returns when they are done; each rank trains with
`distill.trainer.rank.train_here`, as does a process that torchrun started itself.
"""

from __future__ import annotations

import os
from pathlib import Path

from distill.trainer.config import TrainConfig
from distill.trainer.launch import launch
from distill.trainer.rank import train_here


def run_training(config: TrainConfig) -> Path:
    """Train; return the adapter directory (``<output_dir>/adapter``)."""
    if config.deepspeed and "LOCAL_RANK" not in os.environ:
        return launch(config)
    return train_here(config)
