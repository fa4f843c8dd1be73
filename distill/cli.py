"""The ``distill`` console command: one parser built from every package's subcommands.

Each package's ``commands`` module lists its subcommands (``distill.options.Command``); their flags are
generated from their config models. Heavy parts (torch, vLLM) are imported inside ``run``, so
``distill generate`` never loads torch, and the benchmarks' harnesses load only for ``distill bench``.
"""

from __future__ import annotations

import argparse
import sys

from distill import __version__
from distill.engine import commands as engine_commands
from distill.errors import exit_status
from distill.evaluator import commands as evaluator_commands
from distill.options import add_command
from distill.pipeline import commands as pipeline_commands
from distill.review import commands as review_commands
from distill.testing import commands as testing_commands
from distill.trainer import commands as trainer_commands

COMMAND_MODULES = (
    engine_commands,
    trainer_commands,
    evaluator_commands,
    pipeline_commands,
    review_commands,
    testing_commands,
)


def build_parser(*, benchmarks: bool = True) -> argparse.ArgumentParser:
    """The whole command tree; ``benchmarks=False`` leaves ``distill bench`` without its benchmarks (the
    harnesses import most of the project, which a command that is not a benchmark does not need)."""
    parser = argparse.ArgumentParser(
        prog="distill",
        description="Distil a teacher LLM API into a small local student: generate → export → train → eval.",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"distill {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        for command in module.COMMANDS:
            add_command(commands, command)
        if hasattr(
            module, "register"
        ):  # a command with actions of its own, built by hand (`distill batches`)
            module.register(commands)
    bench = commands.add_parser("bench", help="run a benchmark and print its figures", allow_abbrev=False)
    benchmark_commands = bench.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    if benchmarks:
        from distill.bench import commands as bench_commands

        for command in bench_commands.COMMANDS:
            add_command(benchmark_commands, command)
    _refuse_abbreviations(parser)
    return parser


def _refuse_abbreviations(parser: argparse.ArgumentParser) -> None:
    """Every flag must be spelt out: `--mode` is not taken for `--model`, in any subcommand."""
    parser.allow_abbrev = False
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                _refuse_abbreviations(subparser)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(benchmarks=bool(argv) and argv[0] == "bench").parse_args(argv)
    return exit_status(lambda: args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
