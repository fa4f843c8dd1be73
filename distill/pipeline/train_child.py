"""`python -m pipeline.train_child CONFIG.yaml`: the train stage's child process (see pipeline.step_train)."""

from __future__ import annotations

import sys

from distill.config_files import load_config
from distill.errors import UserError


def main(argv: list[str]) -> int:
    from distill.trainer.config import TrainConfig
    from distill.trainer.train import run_training

    try:
        adapter = run_training(load_config(TrainConfig, argv[0]))
    except UserError as exc:
        print(f"distill train: error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    except KeyboardInterrupt:
        print("distill train: interrupted", file=sys.stderr, flush=True)
        return 130
    print(f"distill train: adapter written to {adapter}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
