"""The local servers `distill run` starts: the reference teacher and `vllm serve` of a real-model teacher (the
student's own servers are the evaluator's). Each binds 127.0.0.1 on a port that is free at start, and is stopped when
its ``with`` block ends — normally, on an error or on Ctrl-C.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from distill.endpoint import Endpoint
from distill.evaluator.vllm_server import serve_vllm
from distill.processes import free_port, python_module_command, run_server

# The model names the reference teacher answers to (one server; judge prompts are recognised by their content).
REFERENCE_MODEL = "reference-teacher"
REFERENCE_JUDGE_MODEL = "reference-judge"


@contextlib.contextmanager
def reference_teacher_server(
    known: dict[str, Path],
    log_path: Path,
    *,
    latency_ms: float,
    latency_spread_ms: float,
    stream_ms_per_token: float,
    port: int | None = None,
) -> Iterator[Endpoint]:
    port = port or free_port()
    command = python_module_command(
        "distill",
        "serve-reference-teacher",
        *[arg for flag, path in known.items() for arg in (f"--{flag}", str(path))],
        "--port",
        str(port),
        "--latency-ms",
        str(latency_ms),
        "--latency-spread-ms",
        str(latency_spread_ms),
        "--stream-ms-per-token",
        str(stream_ms_per_token),
    )
    with run_server(command, port=port, log_path=log_path, timeout_s=60, name="reference teacher") as server:
        yield Endpoint(
            base_url=server.base_url + "/v1",
            model=REFERENCE_MODEL,
            api_key_env=None,
            label="reference teacher (answers from the task's known answers; stands in for a strong API model)",
        )


@contextlib.contextmanager
def vllm_server(
    model_dir: Path, served_name: str, log_path: Path, *, max_model_len: int = 2048, timeout_s: float = 600.0
) -> Iterator[Endpoint]:
    """`vllm serve` of ``model_dir`` as ``served_name`` (the evaluator's launcher, with its CPU settings)."""
    with serve_vllm(
        model_dir,
        served_model_name=served_name,
        log_path=log_path,
        max_model_len=max_model_len,
        timeout_s=timeout_s,
    ) as base_url:
        yield Endpoint(base_url=base_url, model=served_name, api_key_env=None)
