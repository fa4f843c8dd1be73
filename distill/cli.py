"""The ``distill`` console command: one parser built from every package's subcommands.

Each package's ``commands`` module lists its subcommands (``distill.options.Command``); their flags are
generated from their config models. ``distill X`` imports only X's module (a config model pulls in its
package), so ``distill generate`` starts with what generation needs and never loads torch; heavy parts
(torch, vLLM) are imported inside ``run`` in any case.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from distill import __version__
from distill.errors import exit_status
from distill.options import add_command

# Every command and the module that declares it, in the order `distill --help` lists them.
COMMAND_MODULES = {
    "generate": "distill.engine.commands",
    "export": "distill.engine.commands",
    "batches": "distill.engine.commands",
    "train": "distill.trainer.commands",
    "eval": "distill.evaluator.commands",
    "run": "distill.pipeline.commands",
    "make-contracts": "distill.pipeline.commands",
    "review": "distill.review.commands",
    "serve-fake-teacher": "distill.testing.commands",
    "serve-reference-teacher": "distill.testing.commands",
    "bench": "distill.bench.commands",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command tree. With ``command``, only that command's module is imported and built; the other
    commands are bare names (enough to parse ``distill COMMAND ...``)."""
    parser = argparse.ArgumentParser(
        prog="distill",
        description="Distil a teacher LLM API into a small local student: generate → export → train → eval.",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"distill {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    wanted = {COMMAND_MODULES[command]} if command in COMMAND_MODULES else set(COMMAND_MODULES.values())
    for name, module_name in COMMAND_MODULES.items():
        if name in commands.choices:
            continue
        if module_name not in wanted:
            commands.add_parser(name)
        elif name == "bench":
            _add_benchmarks(commands, importlib.import_module(module_name))
        else:
            module = importlib.import_module(module_name)
            for declared in module.COMMANDS:
                add_command(commands, declared)
            if hasattr(module, "register"):  # a command with actions of its own, built by hand (`batches`)
                module.register(commands)
    _refuse_abbreviations(parser)
    return parser


def _add_benchmarks(commands: argparse._SubParsersAction, module) -> None:
    bench = commands.add_parser("bench", help="run a benchmark and print its figures")
    benchmarks = bench.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    for declared in module.COMMANDS:
        add_command(benchmarks, declared)


def _refuse_abbreviations(parser: argparse.ArgumentParser) -> None:
    """Every flag must be spelt out: `--mode` is not taken for `--model`, in any subcommand."""
    parser.allow_abbrev = False
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                _refuse_abbreviations(subparser)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv[0] if argv else None).parse_args(argv)
    return exit_status(lambda: args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
