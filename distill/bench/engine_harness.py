"""Plumbing for ``distill bench engine``: sizes, report rows, measured subprocesses, fake teacher, inputs."""

from __future__ import annotations

import compileall
import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from distill.endpoint import Endpoint

TASK = "从合同文本中抽取甲方、乙方、金额和签署日期,并说明依据。"
MODEL = "fake-teacher"


@dataclass
class Sizes:
    prompts: int = 5000
    concurrency: int = 256
    repeats: int = 5  # throughput: alternating runs of each side, the median of them reported
    rpm_prompts: int = 600  # ~60 s at 600 RPM
    inflight: int = 10_000
    million: int = 1_000_000
    curator_python: str | None = None  # an interpreter with bespokelabs-curator, if not ours

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            prompts=1500, concurrency=256, repeats=1, rpm_prompts=200, inflight=10_000, million=100_000
        )

    @classmethod
    def smoke(cls) -> Sizes:
        return cls(prompts=200, concurrency=32, repeats=1, rpm_prompts=40, inflight=300, million=2000)


@dataclass
class Row:
    target: str
    measured: str
    baseline: str
    passed: bool | None  # None: not applicable or skipped

    @property
    def verdict(self) -> str:
        return {True: "pass", False: "MISS", None: "n/a"}[self.passed]


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class ProcessResult:
    inside: dict[str, Any]
    cpu_s: float
    max_rss_mb: float
    returncode: int


# -- processes ------------------------------------------------------------------------------------------


# The packages the measured sides import (in a source checkout the engine lives in a folder of its own).
MEASURED_PACKAGES = ("distill", "distill.engine")


def cache_bytecode() -> None:
    """Compile the measured processes' own modules to bytecode first, as an installed distill has them.

    Every side's CPU includes its imports. Where ``PYTHONDONTWRITEBYTECODE`` is set (or the first time a
    source checkout runs), Python would compile distill's modules from source in every measured process —
    about 0.2 s of CPU that an installed package never pays, and that the floor (which imports one distill
    module) barely pays. Python reads the cached files whatever that variable says."""
    for name in MEASURED_PACKAGES:
        spec = importlib.util.find_spec(name)
        for folder in (spec.submodule_search_locations or []) if spec else []:
            compileall.compile_dir(folder, quiet=2)


def run_measured(command: list[str], *, timeout_s: float = 3600) -> ProcessResult:
    """Run ``command``; its last stdout line is JSON. CPU and peak RSS come from ``wait4``."""
    with tempfile.TemporaryFile() as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=worker_env()
        )
        rusage = _wait(process, timeout_s)
        out.seek(0)
        lines = out.read().decode("utf-8", "replace").strip().splitlines()
    stderr = process.stderr.read().decode("utf-8", "replace") if process.stderr else ""
    inside: dict[str, Any] = {}
    if lines:
        try:
            inside = orjson.loads(lines[-1])
        except orjson.JSONDecodeError:
            inside = {"stdout_tail": lines[-5:]}
    if process.returncode != 0:
        inside["stderr_tail"] = stderr.strip().splitlines()[-8:]
    return ProcessResult(
        inside, rusage.ru_utime + rusage.ru_stime, rusage.ru_maxrss / 1024.0, process.returncode
    )


def _wait(process: subprocess.Popen, timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        pid, status, rusage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            process.returncode = os.waitstatus_to_exitcode(status)
            return rusage
        if time.monotonic() > deadline:
            process.kill()
        time.sleep(0.02)


def worker(side: str, args: dict[str, Any], python: str | None = None) -> list[str]:
    return [python or sys.executable, "-m", "distill.bench.engine_workers", side, orjson.dumps(args).decode()]


@contextmanager
def fake_teacher(**settings: Any) -> Iterator[str]:
    """A fake teacher in its own process; yields its base URL."""
    with fake_teacher_process(**settings) as (url, _):
        yield url


@contextmanager
def fake_teacher_process(**settings: Any) -> Iterator[tuple[str, subprocess.Popen]]:
    """A fake teacher in its own process (session leader): yields its base URL and the process."""
    flags = [item for name, value in settings.items() for item in ("--" + name.replace("_", "-"), str(value))]
    command = [sys.executable, "-m", "distill", "serve-fake-teacher", "--port", "0", *flags]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        line = process.stdout.readline() if process.stdout else ""
        if not line.startswith("listening on "):
            raise RuntimeError(f"fake teacher did not start: {line}")
        yield line.removeprefix("listening on ").strip(), process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def steady_rpm(ok_by_second: dict[str, int]) -> tuple[float, int]:
    """The rate over whole seconds after the first five (past any start-up burst), before the last one."""
    seconds = sorted(int(second) for second in ok_by_second)
    if len(seconds) < 8:
        return 0.0, 0
    window = range(seconds[0] + 5, seconds[-1])
    count = sum(ok_by_second.get(str(second), 0) for second in window)
    return count * 60.0 / len(window), len(window)


def server_stats(base_url: str, reset: bool = False) -> dict[str, Any]:
    if reset:
        urllib.request.urlopen(
            urllib.request.Request(base_url + "/stats/reset", data=b"", method="POST")
        ).close()
        return {}
    with urllib.request.urlopen(base_url + "/stats", timeout=30) as response:
        return orjson.loads(response.read())


# -- inputs and configs ---------------------------------------------------------------------------------


def write_inputs(path: Path, rows: int) -> Path:
    """``rows`` short contract-like inputs, written in blocks so a million lines take seconds."""
    parties = ("华东机械有限公司", "北方物流集团", "星河软件公司", "远洋贸易有限公司", "青山建设集团")
    with open(path, "wb") as handle:
        block = []
        for i in range(rows):
            a, b = parties[i % 5], parties[(i * 3 + 1) % 5]
            text = f"合同编号 HT-{i:07d}:{a}(甲方)委托{b}(乙方)提供服务,合同金额人民币{(i % 97 + 3) * 1000}元,签署日期2025年{i % 12 + 1}月{i % 28 + 1}日。"
            block.append(orjson.dumps({"id": f"row-{i}", "input": text}))
            if len(block) == 10_000:
                handle.write(b"\n".join(block) + b"\n")
                block.clear()
        if block:
            handle.write(b"\n".join(block) + b"\n")
    return path


def write_config(path: Path, *, input_path: Path, output_dir: Path, base_url: str, **settings: Any) -> Path:
    """A generate config for the fake teacher at ``base_url``; endpoint settings (rpm, ...) go to ``teacher``."""
    import yaml

    teacher = {k: v for k, v in settings.items() if k in Endpoint.model_fields}
    config = {
        "input": str(input_path),
        "output_dir": str(output_dir),
        "teacher": {"base_url": base_url + "/v1", "model": MODEL, "api_key_env": None, **teacher},
        "task": TASK,
        "max_tokens": 256,
        **{k: v for k, v in settings.items() if k not in teacher},
    }
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return path


def side_args(base_url: str, input_path: Path, concurrency: int) -> dict[str, Any]:
    return {
        "base_url": base_url,
        "input": str(input_path),
        "template": "zh",
        "task": TASK,
        "model": MODEL,
        "max_tokens": 256,
        "concurrency": concurrency,
    }


def curator_available(python: str | None = None) -> bool:
    """Whether ``python`` (default: ours) can import bespokelabs-curator."""
    command = [python or sys.executable, "-c", "import bespokelabs.curator"]
    return subprocess.run(command, capture_output=True, env=worker_env(), timeout=300).returncode == 0


def worker_env() -> dict[str, str]:
    """Our environment, plus the repository on PYTHONPATH so another interpreter finds ``engine``."""
    root = str(Path(__file__).resolve().parent.parent)
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else "")}
