"""Start a local server as a real subprocess, wait until it answers, and always stop it.

Used for the fake/reference teachers and ``vllm serve``: servers bind 127.0.0.1 on a port chosen free at
start, so two runs on one machine don't collide, and they are stopped on exit, error or Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

from distill.errors import UserError


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status < 500
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class ServerProcess:
    """A running server: its base URL, its process, and where its log goes."""

    def __init__(self, process: subprocess.Popen, base_url: str, log_path: Path) -> None:
        self.process = process
        self.base_url = base_url
        self.log_path = log_path

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM the server's whole process group, then SIGKILL what is left after ``grace_s``."""
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@contextlib.contextmanager
def run_server(
    command: Sequence[str],
    *,
    port: int,
    ready_path: str = "/v1/models",
    log_path: str | os.PathLike,
    timeout_s: float = 180.0,
    env: dict[str, str] | None = None,
    name: str = "server",
) -> Iterator[ServerProcess]:
    """Start ``command`` (which must listen on ``port``), yield once ``ready_path`` answers, stop on exit."""
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    base_url = f"http://127.0.0.1:{port}"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            list(command),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,  # its own process group: stopping it also stops its workers
        )
    server = ServerProcess(process, base_url, log_path)
    try:
        deadline = time.monotonic() + timeout_s
        while not _answers(base_url + ready_path):
            if process.poll() is not None:
                raise UserError(
                    f"{name} exited with code {process.returncode} before answering; last lines of {log_path}:\n"
                    + _tail(log_path)
                )
            if time.monotonic() > deadline:
                raise UserError(
                    f"{name} did not answer on {base_url}{ready_path} within {timeout_s:.0f} s; see {log_path}"
                )
            time.sleep(0.25)
        yield server
    finally:
        server.stop()


def python_module_command(module: str, *args: str) -> list[str]:
    """``python -m module args`` with the interpreter running us (the project's venv)."""
    return [sys.executable, "-m", module, *args]
