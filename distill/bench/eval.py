"""`distill bench eval`: batched student generation against one-prompt-at-a-time transformers, same run.

Every variant generates exactly ``--new-tokens`` tokens (EOS ignored) for the same prompts with the same model,
so tokens/s compare like for like. Model loading is timed apart from generation. vLLM runs through
``distill.evaluator.student_vllm`` — the very process `distill eval` uses — and transformers through
``distill.evaluator.student_hf`` — the evaluator's fallback.

Variants: ``hf1-fp32`` (the baseline: transformers, fp32, one prompt at a time), ``hf1-bf16``,
``hf-batch-fp32``, ``hf-batch-bf16`` (all prompts in one batch), ``vllm-bf16``, ``vllm-fp32``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from distill.errors import UserError
from distill.evaluator.vllm_server import single_process_executor, vllm_environment

BASELINE = "hf1-fp32"
VARIANTS = {
    "hf1-fp32": ("hf1", "float32"),
    "hf1-bf16": ("hf1", "bfloat16"),
    "hf-batch-fp32": ("hf-batch", "float32"),
    "hf-batch-bf16": ("hf-batch", "bfloat16"),
    "vllm-fp32": ("vllm", "float32"),
    "vllm-bf16": ("vllm", "bfloat16"),
    # The same model with an r=32 all-linear adapter applied as a LoRA request (what `lora: lora_request` does):
    # speed does not depend on the adapter's values, so a randomly initialised one is made for the run.
    "vllm-lora-bf16": ("vllm-lora", "bfloat16"),
    "vllm-lora-fp32": ("vllm-lora", "float32"),
}
_TOPICS = (
    "合同甲方为{n}号科技有限公司,乙方为{m}号贸易公司,合同金额{n}{m}万元,请抽取甲方、乙方和金额。",
    "Summarise in two sentences why invoice {n} was paid {m} days late and who approved the delay.",
    "把下面这句话翻译成英文:第{n}批货物于{m}月到港,质量检验合格后付款。",
    "List three risks of signing supplier contract No. {n}-{m} without a penalty clause.",
    "请解释违约金条款第{n}条的含义,并举一个金额为{m}000元的例子。",
    "Write a short, polite reply to customer #{n} asking for a refund of {m} dollars.",
)


def bench_instructions(count: int) -> list[str]:
    return [_TOPICS[i % len(_TOPICS)].format(n=i + 1, m=(7 * i) % 31 + 2) for i in range(count)]


def _hf_variant(
    model_dir: Path, prompts: list[list[int]], new_tokens: int, dtype: str, batch: int, threads: int | None
) -> dict[str, Any]:
    import torch

    from distill.evaluator.student_hf import generate, load_model

    if threads:
        torch.set_num_threads(threads)
    started = time.perf_counter()
    model = load_model(model_dir, None, dtype)
    loaded = time.perf_counter()
    outputs = generate(model, prompts, new_tokens, batch_size=batch, force_length=True)
    done = time.perf_counter()
    del model
    tokens = sum(output["completion_tokens"] for output in outputs)
    return {"load_s": loaded - started, "generate_s": done - loaded, "tokens": tokens}


def random_adapter(model_dir: Path, target: Path, rank: int = 32) -> Path:
    """An r=``rank`` all-linear LoRA adapter with random (non-zero) weights, saved by PEFT."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules="all-linear", init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(target)
    return target


def _vllm_variant(
    model_dir: Path,
    prompts: list[list[int]],
    new_tokens: int,
    dtype: str,
    threads: int | None,
    kv_cache_mib: int,
    adapter: Path | None = None,
) -> dict[str, Any]:
    name = "bench-adapter" if adapter else None
    job = {
        "model_dir": str(model_dir),
        "dtype": dtype,
        "max_model_len": max(len(p) for p in prompts) + new_tokens + 8,
        "kv_cache_mib": kv_cache_mib,
        "single_process": single_process_executor(),
        "adapters": {name: {"path": str(adapter), "rank": 32}} if adapter else {},
        "max_lora_rank": 32,
        "requests": [
            {"adapter": name, "prompt_token_ids": p, "max_tokens": new_tokens, "ignore_eos": True}
            for p in prompts
        ],
    }
    with tempfile.TemporaryDirectory(prefix="distill-bench-eval-") as work:
        job_path, out_path, log_path = (Path(work) / name for name in ("job.json", "out.json", "vllm.log"))
        job_path.write_text(json.dumps(job), encoding="utf-8")
        started = time.perf_counter()
        with open(log_path, "wb") as log:
            code = subprocess.run(
                [sys.executable, "-m", "distill.evaluator.student_vllm", str(job_path), str(out_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **vllm_environment(threads)},
                check=False,
            ).returncode
        wall = time.perf_counter() - started
        if code != 0:
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-10:])
            raise RuntimeError(f"vLLM variant failed (exit {code}):\n{tail}")
        result = json.loads(out_path.read_text(encoding="utf-8"))
    timings = result["timings"]
    return {
        "load_s": wall - timings["generate_s"],  # process start, imports and engine start
        "generate_s": timings["generate_s"],
        "tokens": sum(output["completion_tokens"] for output in result["outputs"]),
    }


def run_benchmark(
    model: str,
    prompt_count: int,
    new_tokens: int,
    variants: list[str],
    *,
    baseline_prompts: int | None = None,
    threads: int | None = None,
    kv_cache_mib: int = 512,
    say=print,
) -> dict[str, Any]:
    from transformers import AutoTokenizer

    from distill.evaluator.students import render_prompt_ids
    from distill.trainer.student import resolve_student

    model_dir = resolve_student(model)
    prompts = render_prompt_ids(AutoTokenizer.from_pretrained(model_dir), bench_instructions(prompt_count))
    results: dict[str, Any] = {}
    unknown = [variant for variant in variants if variant not in VARIANTS]
    if unknown:
        raise UserError(f"bench eval: unknown variant {unknown[0]!r}; known: {', '.join(VARIANTS)}")
    for variant in variants:
        family, dtype = VARIANTS[variant]
        chosen = prompts[:baseline_prompts] if family == "hf1" and baseline_prompts else prompts
        say(f"bench eval: {variant} on {len(chosen)} prompts × {new_tokens} tokens ...")
        if family == "vllm":
            figures = _vllm_variant(model_dir, chosen, new_tokens, dtype, threads, kv_cache_mib)
        elif family == "vllm-lora":
            with tempfile.TemporaryDirectory(prefix="distill-bench-adapter-") as work:
                adapter = random_adapter(model_dir, Path(work) / "adapter")
                figures = _vllm_variant(model_dir, chosen, new_tokens, dtype, threads, kv_cache_mib, adapter)
        else:
            figures = _hf_variant(
                model_dir, chosen, new_tokens, dtype, 1 if family == "hf1" else len(chosen), threads
            )
        figures["prompts"] = len(chosen)
        figures["tokens_per_s"] = figures["tokens"] / figures["generate_s"]
        results[variant] = figures
        say(
            f"bench eval: {variant}: {figures['tokens_per_s']:.1f} tok/s "
            f"({figures['tokens']} tokens in {figures['generate_s']:.1f} s; load {figures['load_s']:.1f} s)"
        )
    if BASELINE in results:
        for figures in results.values():
            figures["speedup_vs_baseline"] = figures["tokens_per_s"] / results[BASELINE]["tokens_per_s"]
    prompt_lengths = [len(p) for p in prompts]
    return {
        "model": str(model_dir),
        "prompts": prompt_count,
        "prompt_tokens_mean": sum(prompt_lengths) / len(prompt_lengths),
        "new_tokens": new_tokens,
        "threads": threads or len(os.sched_getaffinity(0)),
        "baseline": BASELINE,
        "results": results,
    }


def format_table(report: dict[str, Any]) -> str:
    lines = [
        f"model {report['model']}, {report['prompts']} prompts (mean {report['prompt_tokens_mean']:.0f} tokens), "
        f"{report['new_tokens']} new tokens each, {report['threads']} thread(s)",
        "| variant | prompts | tok/s | × baseline | generate s | load s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, figures in report["results"].items():
        speedup = figures.get("speedup_vs_baseline")
        lines.append(
            f"| {name} | {figures['prompts']} | {figures['tokens_per_s']:.1f} | "
            f"{'—' if speedup is None else f'{speedup:.1f}×'} | {figures['generate_s']:.1f} | "
            f"{figures['load_s']:.1f} |"
        )
    return "\n".join(lines)


class EvalBenchConfig(BaseModel):
    """``distill bench eval``'s settings."""

    model_config = ConfigDict(extra="forbid")

    prompts: int = Field(default=32, ge=1, description="number of prompts")
    new_tokens: int = Field(default=64, ge=1, description="tokens generated per prompt")
    baseline_prompts: int | None = Field(
        default=None, ge=1, description="prompts for the slow one-at-a-time baseline (default: all)"
    )
    variants: str = Field(
        default="hf1-fp32,hf-batch-bf16,vllm-bf16,vllm-fp32",
        description=f"comma-separated, from: {', '.join(VARIANTS)}",
    )
    model: str = Field(default="smollm2-135m-instruct", description="student model (alias or dir)")
    threads: int | None = Field(
        default=None, ge=1, description="CPU threads for every variant (default: all cores)"
    )
    json_path: Path | None = Field(
        default=None,
        description="also write the figures to this JSON file",
        json_schema_extra={"flag": "json"},
    )


def bench_eval(config: EvalBenchConfig) -> int:
    """Run the variants and print the table (and write the JSON)."""
    report = run_benchmark(
        config.model,
        config.prompts,
        config.new_tokens,
        [v.strip() for v in config.variants.split(",") if v.strip()],
        baseline_prompts=config.baseline_prompts,
        threads=config.threads,
    )
    print(format_table(report))
    if config.json_path:
        config.json_path.write_text(json.dumps(report, indent=1), encoding="utf-8")
    return 0
