"""Run a heavy stage (training, evaluation) as a child process: its memory goes back to the OS when it ends,
its output goes to the terminal and to a log, and Ctrl-C or SIGTERM of `distill run` stops it and its workers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from distill.errors import UserError


def _stop_group(process: subprocess.Popen, grace_s: float) -> None:
    """SIGINT the child's process group (a clean stop), then SIGTERM, then SIGKILL."""
    for signum, wait_s in ((signal.SIGINT, grace_s), (signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        if process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signum)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=wait_s)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_child(
    command: Sequence[str],
    *,
    log_path: Path,
    name: str,
    env: dict[str, str] | None = None,
    grace_s: float = 30.0,
    echo: bool = True,
) -> None:
    """Run ``command`` to completion; a non-zero exit is a UserError that points at the log."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(f"$ {' '.join(command)}\n".encode())
        log.flush()
        process = subprocess.Popen(
            list(command),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,  # its own group, so stopping it reaches vLLM's and torch's workers too
            # A shell starts background jobs (and nohup) with Ctrl-C ignored, and children inherit that:
            # give the child the default, so the clean stop below (SIGINT first) reaches it.
            preexec_fn=_default_sigint,
        )
        try:
            assert process.stdout is not None
            for chunk in iter(lambda: process.stdout.read1(65536), b""):
                log.write(chunk)
                log.flush()
                if echo:
                    sys.stdout.buffer.write(chunk)
                    sys.stdout.flush()
            code = process.wait()
        except BaseException:
            _stop_group(process, grace_s)
            raise
        finally:
            if process.stdout is not None:
                process.stdout.close()
    if code == 130 or code == -signal.SIGINT:
        raise KeyboardInterrupt
    if code != 0:
        raise UserError(f"{name} failed with exit code {code}; its output is in {log_path}")
