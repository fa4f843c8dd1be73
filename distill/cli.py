"""The ``distill`` console command: one parser; each package contributes its subcommands.

Subcommand modules register argparse parsers only and import their heavy parts (torch, vLLM) inside the
handler, so ``distill generate`` never loads torch.
"""

from __future__ import annotations

import argparse
import sys

from distill import __version__
from distill.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    from distill.engine import commands as engine_commands
    from distill.evaluator import commands as evaluator_commands
    from distill.pipeline import commands as pipeline_commands
    from distill.review import commands as review_commands
    from distill.trainer import commands as trainer_commands

    parser = argparse.ArgumentParser(
        prog="distill",
        description="Distil a teacher LLM API into a small local student: generate → export → train → eval.",
    )
    parser.add_argument("--version", action="version", version=f"distill {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    bench = commands.add_parser("bench", help="run a benchmark and print its figures")
    benchmarks = bench.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    for module in (engine_commands, trainer_commands, evaluator_commands, pipeline_commands, review_commands):
        module.register(commands, benchmarks)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except UserError as exc:
        print(f"distill: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("distill: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
