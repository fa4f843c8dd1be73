"""Subcommands contributed by `engine` (placeholder until its issue lands)."""

import argparse


def register(commands: argparse._SubParsersAction, benchmarks: argparse._SubParsersAction) -> None:
    """Add this package's subcommands to ``distill`` and its benchmarks to ``distill bench``."""
    from engine import fake_teacher

    fake_teacher.register_cli(commands)
