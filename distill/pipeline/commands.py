"""Subcommands contributed by `pipeline`: the bundled contract task's data and teacher, and `distill run`."""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction, benchmarks: argparse._SubParsersAction) -> None:
    """Add this package's subcommands to ``distill`` and its benchmarks to ``distill bench``."""
    from distill.testing import reference_teacher

    contracts = commands.add_parser(
        "make-contracts",
        help="write the bundled task's synthetic contracts: train inputs, held-out eval set, truth",
        description="Seeded synthetic Chinese and English contracts with known 甲方/乙方/金额/签订日期/违约条款. "
        "Writes OUT/train.jsonl (id, input), OUT/eval.jsonl (id, input, reference) from an independent seed, "
        "and OUT/truth.jsonl (for the reference teacher).",
    )
    contracts.add_argument("--out", required=True, help="directory to write the three files into")
    contracts.add_argument("--train", type=int, default=200, help="training inputs (default 200)")
    contracts.add_argument("--eval", type=int, default=60, help="held-out contracts (default 60)")
    contracts.add_argument("--train-seed", type=int, default=1)
    contracts.add_argument("--eval-seed", type=int, default=1001)
    contracts.add_argument("--english-share", type=float, default=0.25, help="share of English contracts")
    contracts.set_defaults(handler=_make_contracts)

    reference_teacher.register_cli(commands)

    run = commands.add_parser(
        "run",
        help="the whole distillation end to end: generate → export → train → evaluate → report",
        description="Run every stage of CONFIG; a stage whose output is complete for the same config is skipped, "
        "so an interrupted run resumes where it stopped.",
    )
    run.add_argument("config", help="YAML run config, e.g. configs/demo.yaml")
    run.add_argument("--output-dir", help="override the config's output_dir")
    run.add_argument("--force", action="store_true", help="redo every stage even when its output is complete")
    run.set_defaults(handler=_run)


def _make_contracts(args: argparse.Namespace) -> int:
    from distill.pipeline.contracts import make_contract_sets

    sets = make_contract_sets(
        args.out,
        train_count=args.train,
        eval_count=args.eval,
        train_seed=args.train_seed,
        eval_seed=args.eval_seed,
        english_share=args.english_share,
    )
    print(f"wrote {sets.train_count} training inputs to {sets.train_path}")
    print(f"wrote {sets.eval_count} held-out contracts to {sets.eval_path}")
    print(f"wrote the ground truth of both to {sets.truth_path}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from distill.pipeline.run import run_pipeline

    return run_pipeline(args.config, output_dir=args.output_dir, force=args.force)
