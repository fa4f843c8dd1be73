"""`distill make-contracts` (the bundled task's data) and `distill run` (the whole distillation)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pydantic import Field

from distill.options import Command, Loaded
from distill.pipeline.config import ContractsConfig, LoadedRunConfig, RunConfig

RUN_EPILOG = """\
examples:
  distill run demo-tiny --output-dir runs/tiny     # the bundled tiny example, a few minutes
  distill run configs/demo.yaml                    # the seed's experiment on 360 contracts
  distill run examples/job-postings                # your own task's shape: JSONL inputs + an answer schema
  distill run examples/support-summary             # a free-text task, judged without a schema
  distill run my-run.yaml --with-thinking          # any key of the file is also a flag
"""


class MakeContractsConfig(ContractsConfig):
    out: Path = Field(description="directory to write train.jsonl, eval.jsonl and truth.jsonl into")


class MakeContractsCommand(Command):
    name = "make-contracts"
    help = "write the bundled task's synthetic contracts: train inputs, held-out eval set, truth"
    description = (
        "Seeded synthetic Chinese and English contracts with known 甲方/乙方/金额/签订日期/违约条款. Writes "
        "OUT/train.jsonl (id, input), OUT/eval.jsonl (id, input, reference) from an independent seed, and "
        "OUT/truth.jsonl (for the reference teacher)."
    )
    config = MakeContractsConfig

    def run(self, config: MakeContractsConfig, args: argparse.Namespace) -> int:
        from distill.pipeline.contracts import make_contract_sets

        sets = make_contract_sets(
            config.out,
            train_count=config.train,
            eval_count=config.eval,
            train_seed=config.train_seed,
            eval_seed=config.eval_seed,
            english_share=config.english_share,
        )
        print(f"wrote {sets.train_count} training inputs to {sets.train_path}")
        print(f"wrote {sets.eval_count} held-out contracts to {sets.eval_path}")
        print(f"wrote the ground truth of both to {sets.truth_path}")
        return 0


class RunCommand(Command):
    name = "run"
    help = "the whole distillation end to end: data → generate → export → train → evaluate → report"
    description = (
        "Run every stage of CONFIG; a stage whose output is complete for the same config is skipped, so an "
        "interrupted run resumes where it stopped. CONFIG is a file or a bundled config's name (demo, "
        "demo-tiny, demo-full, demo-reasoning, examples/job-postings, examples/support-summary)."
    )
    epilog = RUN_EPILOG
    config = RunConfig
    positional_config = True

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--force", action="store_true", help="redo every stage even when its output is complete"
        )

    def run_loaded(self, loaded: Loaded[RunConfig], args: argparse.Namespace) -> int:
        from distill.pipeline.run import run_pipeline

        return run_pipeline(LoadedRunConfig(loaded.config, loaded.source, loaded.lines), force=args.force)


COMMANDS = (MakeContractsCommand(), RunCommand())
