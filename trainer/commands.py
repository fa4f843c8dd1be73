"""`distill train`: its flags come from TrainConfig; torch, transformers and DeepSpeed load inside ``run``."""

from __future__ import annotations

import argparse

from distill.trainer.config import TrainConfig

from distill.options import Command

TRAIN_EPILOG = """\
examples:
  distill train --data runs/contracts                      # an engine run directory (accepted shards)
  distill train --data data/contracts_alpaca.jsonl --format thinking --eval-file eval.jsonl --merge
  distill train --config my-train.yaml --data runs/contracts --resume
  distill train --data runs/contracts --deepspeed configs/ds_zero2.json --nproc 2
  distill train ... --deepspeed configs/ds_zero3.json --nproc 8 --nnodes 2 --node-rank 0 --master-addr 10.0.0.1

Writes OUTPUT_DIR/adapter (PEFT adapter + distill_manifest.json), OUTPUT_DIR/loss_curve.png,
OUTPUT_DIR/train_log.jsonl, OUTPUT_DIR/checkpoints/step-N (resume with --resume) and, with --merge,
OUTPUT_DIR/merged. The defaults are the seed's: LoRA r32/α64 on every linear layer, lr 5e-5, 2 epochs,
batch 2 × 8.
"""


class TrainCommand(Command):
    name = "train"
    help = "LoRA-tune the student on generated data (packing, DeepSpeed ZeRO-2/3, resumable)"
    description = (
        "LoRA SFT of the student on what `distill generate`/`export` wrote. The loss covers only the answer "
        "tokens, rendered with the student's chat template."
    )
    epilog = TRAIN_EPILOG
    config = TrainConfig

    def run(self, config: TrainConfig, args: argparse.Namespace) -> int:
        from distill.trainer.train import run_training

        print(run_training(config))
        return 0


COMMANDS = (TrainCommand(),)
