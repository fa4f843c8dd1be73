"""How `distill run` speaks to the terminal: one prefixed line per event, flushed at once (child processes and
servers write to the same terminal)."""

from __future__ import annotations


def say(message: str) -> None:
    print(f"distill run: {message}", flush=True)
