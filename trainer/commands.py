"""Subcommands contributed by `trainer`: `distill train` and `distill bench train`.

Parsers only; torch, transformers and DeepSpeed are imported inside the handlers.
"""

from __future__ import annotations

import argparse

TRAIN_EPILOG = """\
examples:
  distill train --data runs/contracts                      # an engine run directory (accepted shards)
  distill train --data data/contracts_alpaca.jsonl --format thinking --eval-file eval.jsonl --merge
  distill train --config configs/train_lora.yaml --data runs/contracts --resume
  distill train --data runs/contracts --deepspeed configs/ds_zero2.json --nproc 2
  distill train ... --deepspeed configs/ds_zero3.json --nproc 8 --nnodes 2 --node-rank 0 --master-addr 10.0.0.1

Writes OUTPUT_DIR/adapter (PEFT adapter + distill_manifest.json), OUTPUT_DIR/loss_curve.png,
OUTPUT_DIR/train_log.jsonl, OUTPUT_DIR/checkpoints/step-N (resume with --resume) and, with --merge,
OUTPUT_DIR/merged. Defaults: configs/train_lora.yaml (the seed's LoRA r32/α64, lr 5e-5, 2 epochs, batch 2 × 8).
"""

# flag -> TrainConfig field, type, help; each overrides the same key of --config.
_FLAGS: list[tuple[str, str, type, str]] = [
    ("--eval-file", "eval_file", str, "independent eval set (refused if it overlaps the training ids)"),
    ("--output-dir", "output_dir", str, "where the adapter, checkpoints and logs go (default runs/train)"),
    (
        "--base-model",
        "base_model",
        str,
        "student: alias, HF model directory or .gguf (default smollm2-135m-instruct)",
    ),
    ("--format", "format", str, "answer (target = output) or thinking (target = full_output)"),
    ("--lora-rank", "lora_rank", int, "LoRA rank (default 32)"),
    ("--lora-alpha", "lora_alpha", float, "LoRA alpha (default 64)"),
    ("--learning-rate", "learning_rate", float, "peak learning rate (default 5e-5)"),
    ("--epochs", "epochs", float, "epochs (default 2)"),
    (
        "--per-device-batch-size",
        "per_device_batch_size",
        int,
        "samples per micro-batch per process (default 2)",
    ),
    (
        "--gradient-accumulation-steps",
        "gradient_accumulation_steps",
        int,
        "micro-batches per step (default 8)",
    ),
    ("--max-steps", "max_steps", int, "stop after this many optimizer steps"),
    ("--val-size", "val_size", float, "fraction of ids held out for validation (default 0.05)"),
    ("--eval-steps", "eval_steps", int, "evaluate every N steps (default 100)"),
    ("--max-length", "max_length", int, "longest sample in tokens (default 1024)"),
    ("--overlong", "overlong", str, "truncate or drop samples over max-length (default truncate)"),
    ("--token-budget", "token_budget", int, "tokens per packed micro-batch (default 2048)"),
    ("--save-steps", "save_steps", int, "checkpoint every N steps (default 100)"),
    ("--seed", "seed", int, "seed for the split, the order and LoRA's init (default 42)"),
    (
        "--dtype",
        "dtype",
        str,
        "fp32, bf16 (bf16 weights) or bf16-mixed (fp32 weights, bf16 autocast) (default fp32)",
    ),
    ("--device", "device", str, "auto, cpu or cuda (default auto)"),
    ("--deepspeed", "deepspeed", str, "DeepSpeed JSON (configs/ds_zero2.json, configs/ds_zero3.json)"),
    ("--nproc", "nproc", int, "processes on this node (needs --deepspeed)"),
    ("--nnodes", "nnodes", int, "nodes in the job (default 1)"),
    ("--node-rank", "node_rank", int, "this node's rank (default 0)"),
    ("--master-addr", "master_addr", str, "address of node 0 (default 127.0.0.1)"),
    (
        "--master-port",
        "master_port",
        int,
        "port on node 0 (default: a free port on one node, 29500 on several)",
    ),
]


def register(commands: argparse._SubParsersAction, benchmarks: argparse._SubParsersAction) -> None:
    """Add this package's subcommands to ``distill`` and its benchmarks to ``distill bench``."""
    parser = commands.add_parser(
        "train",
        help="LoRA-tune the student on generated data (packing, DeepSpeed ZeRO-2/3, resumable)",
        description="LoRA SFT of the student on what `distill generate`/`export` wrote. The loss covers only "
        "the answer tokens, rendered with the student's chat template.",
        epilog=TRAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", help="YAML config (default configs/train_lora.yaml)")
    parser.add_argument(
        "--data", action="append", help="run directory, records JSONL or alpaca/sharegpt export (repeatable)"
    )
    for flag, _, kind, text in _FLAGS:
        parser.add_argument(flag, type=kind, help=text)
    parser.add_argument(
        "--packing",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="padding-free packing (default on)",
    )
    parser.add_argument(
        "--resume", action="store_true", default=None, help="continue from the newest checkpoint"
    )
    parser.add_argument(
        "--merge", action="store_true", default=None, help="also write base+adapter merged weights"
    )
    parser.set_defaults(handler=_train)

    from distill.bench import train as bench

    bench.register_cli(benchmarks)


def _train(args: argparse.Namespace) -> int:
    from distill.trainer.config import load_train_config
    from distill.trainer.train import run_training

    overrides = {field: getattr(args, field) for _, field, _, _ in _FLAGS}
    overrides.update(data=args.data, packing=args.packing, resume=args.resume, merge=args.merge)
    config = load_train_config(args.config, overrides)
    adapter = run_training(config)
    print(adapter)
    return 0
