"""`python -m pipeline.train_child CONFIG.yaml`: the train stage's child process (see pipeline.step_train)."""

from __future__ import annotations

import sys

from distill.config_files import load_config
from distill.errors import exit_status


def main(argv: list[str]) -> int:
    from distill.trainer.config import TrainConfig
    from distill.trainer.train import run_training

    def train() -> int:
        adapter = run_training(load_config(TrainConfig, argv[0]))
        print(f"distill train: adapter written to {adapter}", flush=True)
        return 0

    return exit_status(train, prog="distill train")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
