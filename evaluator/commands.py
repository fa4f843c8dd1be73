"""`distill eval` and `distill bench eval`. Heavy imports (torch, vLLM, matplotlib) happen inside handlers."""

from __future__ import annotations

import argparse


def _eval(args: argparse.Namespace) -> int:
    from distill.evaluator.config import load_eval_config
    from distill.evaluator.run import run_evaluation

    overrides = {"eval_set": args.eval_set, "output_dir": args.output_dir, "limit": args.limit}
    config = load_eval_config(args.config, overrides)
    if args.backend:
        config.generation.backend = args.backend
    if args.no_latency:
        config.latency.enabled = False
    if args.no_plots:
        config.plots = False
    report = run_evaluation(config)
    for name, comparison in report["comparisons"].items():
        print(f"{name}: {comparison['roi']['recommendation']}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from distill.bench.eval import main

    return main(args)


def _bench_overhead(args: argparse.Namespace) -> int:
    from distill.bench.eval_overhead import run

    run(args)
    return 0


def register(commands: argparse._SubParsersAction, benchmarks: argparse._SubParsersAction) -> None:
    """Add this package's subcommands to ``distill`` and its benchmarks to ``distill bench``."""
    parser = commands.add_parser(
        "eval",
        help="student vs teacher: quality (judge, field F1), latency, cost, ROI verdict and report",
        description="Evaluate students (base model, base + LoRA adapter) against the teacher on a held-out set "
        "and write report.json, report.md and plots. Paid calls and student outputs are cached: rerun the same "
        "command to resume. See configs/eval.yaml for every key.",
    )
    parser.add_argument("--config", required=True, help="YAML config (configs/eval.yaml documents every key)")
    parser.add_argument("--eval-set", help="override eval_set: JSONL with id, input, reference")
    parser.add_argument("--output-dir", help="override output_dir")
    parser.add_argument("--limit", type=int, help="evaluate the first N items only")
    parser.add_argument(
        "--backend", choices=("auto", "vllm", "transformers"), help="student generation backend"
    )
    parser.add_argument("--no-latency", action="store_true", help="skip the latency/throughput load test")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.set_defaults(handler=_eval)

    bench = benchmarks.add_parser(
        "eval",
        help="batched student generation (vLLM, transformers) vs one-prompt-at-a-time transformers",
        description="Generate the same prompts with the same model: transformers one prompt at a time (the "
        "baseline), transformers batched, and vLLM offline batched; print tokens/s and speed-ups.",
    )
    bench.add_argument("--prompts", type=int, default=32, help="number of prompts (default 32)")
    bench.add_argument("--new-tokens", type=int, default=64, help="tokens generated per prompt (default 64)")
    bench.add_argument(
        "--baseline-prompts",
        type=int,
        default=None,
        help="prompts for the slow one-at-a-time baseline (default: all)",
    )
    bench.add_argument(
        "--variants",
        default="hf1-fp32,hf-batch-bf16,vllm-bf16,vllm-fp32",
        help="comma-separated: hf1-fp32, hf1-bf16, hf-batch-fp32, hf-batch-bf16, vllm-bf16, vllm-fp32, "
        "vllm-lora-bf16, vllm-lora-fp32",
    )
    bench.add_argument("--model", default="smollm2-135m-instruct", help="student model (alias or dir)")
    bench.add_argument("--threads", type=int, help="CPU threads for every variant (default: all cores)")
    bench.add_argument("--json", help="also write the figures to this JSON file")
    bench.set_defaults(handler=_bench)

    overhead = benchmarks.add_parser(
        "eval-overhead",
        help="one distill eval against local fake endpoints: the evaluator's own time vs generation and HTTP",
        description="Run a whole `distill eval` (fake teacher and judge in-process, the real student) and print "
        "the time per stage and the evaluator's own share of the wall time. Rerun with the same --work-dir to "
        "time a fully cached rerun.",
    )
    overhead.add_argument("--items", type=int, default=60, help="eval items (default 60, the demo's size)")
    overhead.add_argument("--new-tokens", type=int, default=96, help="student max new tokens (default 96)")
    overhead.add_argument(
        "--api-latency-ms", type=float, default=400.0, help="fake API latency (default 400)"
    )
    overhead.add_argument("--backend", default="vllm", choices=("vllm", "transformers"))
    overhead.add_argument("--model", default="smollm2-135m-instruct")
    overhead.add_argument("--threads", type=int, help="CPU threads for the student (default: all cores)")
    overhead.add_argument(
        "--latency",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="include the latency stage (starts vllm serve)",
    )
    overhead.add_argument("--work-dir", help="where eval set and report go (default: a new temp dir)")
    overhead.set_defaults(handler=_bench_overhead)
