"""Fixtures that start the fake teacher for real: as a subprocess (`distill serve-fake-teacher`) or a thread.

``fake_teacher`` starts ``python -m distill serve-fake-teacher --port 0`` with the given flags, reads the
``listening on ...`` line, yields a :class:`FakeTeacher` (base URL + /stats helpers), and stops the process
(and checks it is gone) when the test ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from distill.testing.fake_teacher import FakeTeacherSettings, start_in_thread

_START_TIMEOUT_S = 30


@dataclass
class FakeTeacher:
    base_url: str
    process: subprocess.Popen | None = None

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.base_url + "/stats", timeout=10) as response:
            return json.loads(response.read())

    def reset_stats(self) -> None:
        request = urllib.request.Request(self.base_url + "/stats/reset", data=b"", method="POST")
        urllib.request.urlopen(request, timeout=10).close()


def _flags(settings: dict[str, Any]) -> list[str]:
    flags = []
    for name, value in settings.items():
        if name not in FakeTeacherSettings.model_fields:
            raise KeyError(f"no fake teacher setting {name!r}")  # a typo in a test, not a silent default
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):  # a switch: --x / --no-x
            flags.append(flag if value else "--no-" + flag[2:])
        else:
            flags += [flag, str(value)]
    return flags


@contextlib.contextmanager
def fake_teacher_process(env: dict[str, str] | None = None, **settings: Any) -> Iterator[FakeTeacher]:
    """A real ``distill serve-fake-teacher`` subprocess on a free port."""
    command = [sys.executable, "-m", "distill", "serve-fake-teacher", "--port", "0", *_flags(settings)]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    try:
        first = process.stdout.readline() if process.stdout else ""
        if not first.startswith("listening on "):
            rest = process.stdout.read() if process.stdout else ""
            raise RuntimeError(f"fake teacher did not start: {first}{rest}")
        yield FakeTeacher(first.removeprefix("listening on ").strip(), process)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=_START_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if process.stdout:
            process.stdout.close()


@pytest.fixture
def fake_teacher() -> Iterator[Callable[..., contextlib.AbstractContextManager[FakeTeacher]]]:
    """Factory: ``with fake_teacher(latency_ms=20, rpm=120) as teacher: teacher.base_url``."""
    yield fake_teacher_process


@pytest.fixture
def fake_teacher_thread() -> Iterator[Callable[..., FakeTeacher]]:
    """Factory for an in-process server (cheaper; for tests that don't need a separate process)."""
    stops: list[Callable[[], None]] = []

    def start(responder: Callable[[dict], str] | None = None, **settings: Any) -> FakeTeacher:
        url, stop = start_in_thread(FakeTeacherSettings(**settings), responder)
        stops.append(stop)
        return FakeTeacher(url)

    yield start
    for stop in stops:
        stop()


@pytest.fixture
def fake_teacher_url(fake_teacher_thread) -> Callable[..., str]:
    """Factory for an in-process server's base URL: ``url = fake_teacher_url(batch_ms_per_request=0)``."""
    return lambda **settings: fake_teacher_thread(**settings).base_url
