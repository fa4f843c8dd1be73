"""The one exception type the CLI turns into a clean message instead of a traceback, and the one place it does."""

from __future__ import annotations

import sys
from collections.abc import Callable


class UserError(Exception):
    """Bad input, bad config, unreachable endpoint, missing key: something the user can fix.

    The message must name what to fix: the file, the line and the field where there is one.
    """

    def __init__(self, message: str, *, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def exit_status(work: Callable[[], int | None], *, prog: str = "distill", quiet: bool = False) -> int:
    """Run ``work`` as a process's main: a UserError is one ``prog: error: ...`` line and its exit code,
    Ctrl-C is exit code 130. ``quiet`` keeps the message to another process (a training rank that is not 0)."""
    try:
        return int(work() or 0)
    except UserError as exc:
        if not quiet:
            print(f"{prog}: error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    except KeyboardInterrupt:
        if not quiet:
            print(f"{prog}: interrupted", file=sys.stderr, flush=True)
        return 130
