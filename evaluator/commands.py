"""`distill eval`: its flags come from EvalConfig; torch, vLLM and matplotlib load inside ``run``."""

from __future__ import annotations

import argparse

from distill.evaluator.config import EvalConfig

from distill.options import Command


class EvalCommand(Command):
    name = "eval"
    help = "student vs teacher: quality (judge, field F1), latency, cost, ROI verdict and report"
    description = (
        "Evaluate students (base model, base + LoRA adapter) against the teacher on a held-out set and write "
        "report.json, report.md and plots. Paid calls and student outputs are cached: rerun the same command "
        "to resume. configs/eval.yaml shows every section."
    )
    config = EvalConfig

    def run(self, config: EvalConfig, args: argparse.Namespace) -> int:
        from distill.evaluator.run import run_evaluation

        report = run_evaluation(config)
        for name, comparison in report["comparisons"].items():
            print(f"{name}: {comparison['roi']['recommendation']}")
        return 0


COMMANDS = (EvalCommand(),)
