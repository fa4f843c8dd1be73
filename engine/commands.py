"""Subcommands contributed by `engine`: generate, export, serve-fake-teacher (and `distill bench engine`).

Parsers only; the work is imported inside each handler so `distill --help` stays instant.
"""

from __future__ import annotations

import argparse
import json
import sys

from distill.review.decisions import EXPORT_MODES

GENERATE_EPILOG = """\
examples:
  # the bundled config against a local test server (no key needed on 127.0.0.1)
  distill serve-fake-teacher --port 8000 &
  distill generate --config configs/generate.yaml

  # a real teacher: the key comes from the environment variable named by --api-key-env
  export OPENAI_API_KEY=sk-...
  distill generate --input inputs.jsonl --output-dir runs/contracts --base-url https://api.openai.com/v1 \\
      --model gpt-4o --task "从合同中抽取甲乙方、金额、日期" --samples-per-input 3 --rpm 500 --tpm 200000 \\
      --budget 50

Run the same command again after a crash, kill or Ctrl-C: it resumes where it stopped and never writes a
(id, sample_index) twice. Output: run.json, accepted-*/rejected-*/failed-*.jsonl shards, done.keys,
summary.json (also printed as JSON at the end). Exit status: 0 complete, 2 error or fatal teacher error,
3 budget reached, 4 disk full, 5 stopped, 130 interrupted; every one but 0 leaves a resumable run.
"""

EXPORT_EPILOG = """\
examples:
  distill export --run-dir runs/contracts --out-dir data/ --format both
  distill export --run-dir runs/contracts --out-dir data/ --format alpaca --with-thinking
  distill export --run-dir runs/contracts --out-dir data/ --review approved   # after `distill review`

Writes OUT/<name>_alpaca.jsonl and/or OUT/<name>_sharegpt.jsonl plus OUT/dataset_info.json (LLaMA-Factory's
format; an existing file is extended). Answer-only uses each record's `output`, --with-thinking its
`full_output` (【思考】…【答案】…). The files load with datasets.load_dataset("json", data_files=...).
"""

# flag -> GenerateConfig field (teacher.* inside the teacher section); each overrides the same key of --config.
_GENERATE_FLAGS: list[tuple[str, str, type, str]] = [
    ("--input", "input", str, "JSONL file, one object per line with an id and an input text"),
    ("--output-dir", "output_dir", str, "run directory: shards, run.json, summary.json (resumable)"),
    ("--base-url", "teacher.base_url", str, "OpenAI-compatible endpoint, e.g. https://api.openai.com/v1"),
    ("--model", "teacher.model", str, "teacher model name"),
    (
        "--api-key-env",
        "teacher.api_key_env",
        str,
        "NAME of the environment variable holding the key (default OPENAI_API_KEY)",
    ),
    ("--task", "task", str, "task description put into the prompt and the student's instruction"),
    (
        "--template",
        "template",
        str,
        "prompt template: zh (default, the seed's), en, or a file with {task} {input}",
    ),
    (
        "--id-field",
        "id_field",
        str,
        "input field holding the row id (default id; absent: derived from the text)",
    ),
    ("--input-field", "input_field", str, "input field holding the text (default input)"),
    ("--samples-per-input", "samples_per_input", int, "answers per input (default 1)"),
    ("--temperature-first", "temperature_first", float, "temperature of sample 0 (default 0.3)"),
    ("--temperature-rest", "temperature_rest", float, "temperature of later samples (default 0.8)"),
    ("--max-tokens", "max_tokens", int, "max completion tokens per answer (default 1024)"),
    ("--concurrency", "teacher.concurrency", int, "max requests in flight (default 64)"),
    ("--rpm", "teacher.rpm", float, "requests per minute limit"),
    (
        "--tpm",
        "teacher.tpm",
        float,
        "tokens per minute limit (prompt + max_tokens reserved, corrected by usage)",
    ),
    ("--retries", "teacher.retries", int, "retries of a transient failure (default 5)"),
    (
        "--budget",
        "budget",
        float,
        "stop admitting requests once this much is spent (needs teacher.price in the config)",
    ),
    ("--shard-max-bytes", "shard_max_bytes", int, "rotate shards at this size (default 128 MiB)"),
]


def register(commands: argparse._SubParsersAction, benchmarks: argparse._SubParsersAction) -> None:
    """Add this package's subcommands to ``distill`` and its benchmarks to ``distill bench``."""
    from distill.bench import engine as bench
    from distill.testing import fake_teacher

    _register_generate(commands)
    _register_export(commands)
    fake_teacher.register_cli(commands)
    bench.register_cli(benchmarks)


def _register_generate(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "generate",
        help="call the teacher for every input and write resumable CoT shards",
        description="Stream inputs to an OpenAI-compatible teacher under rate limits, parse and filter the "
        "chain-of-thought answers, and write accepted/rejected/failed JSONL shards that resume exactly-once.",
        epilog=GENERATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", help="YAML config (see configs/generate.yaml); flags override its keys")
    for flag, dest, kind, text in _GENERATE_FLAGS:
        parser.add_argument(flag, dest=dest, type=kind, default=None, help=text)
    parser.add_argument(
        "--force",
        action="store_true",
        help="resume even though run.json shows other prompt/model/sampling settings",
    )
    parser.add_argument(
        "--retry-failed",
        action="store_true",
        help="send the failed (id, sample) pairs again; their old failure records move to failed-retried/",
    )
    parser.add_argument("--no-progress", action="store_true", help="no live display or progress log lines")
    parser.set_defaults(handler=_generate)


def _register_export(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "export",
        help="turn a run's accepted records into alpaca/sharegpt training files",
        description="Convert accepted records into LLaMA-Factory / datasets training files.",
        epilog=EXPORT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--run-dir", required=True, help="a `distill generate` output directory")
    parser.add_argument("--out-dir", required=True, help="where the training files and dataset_info.json go")
    parser.add_argument("--format", choices=("alpaca", "sharegpt", "both"), default="both")
    parser.add_argument(
        "--with-thinking",
        action="store_true",
        help="train on full_output (【思考】…【答案】…) instead of the answer only",
    )
    parser.add_argument("--name", help="dataset name (default: the run directory's name)")
    parser.add_argument(
        "--review",
        choices=EXPORT_MODES,
        help="apply `distill review` decisions: only approved records, or all but rejected ones "
        "(edited answers replace the originals)",
    )
    parser.set_defaults(handler=_export)


def _generate(args: argparse.Namespace) -> int:
    from distill.engine.config import load_generate_config
    from distill.engine.runner import EXIT_CODES, run_generation

    overrides: dict = {}
    for _, dest, _, _ in _GENERATE_FLAGS:
        section, _, key = dest.rpartition(".")
        (overrides.setdefault(section, {}) if section else overrides)[key] = getattr(args, dest)
    config = load_generate_config(args.config, overrides)
    summary = run_generation(
        config, force=args.force, progress=not args.no_progress, retry_failed=args.retry_failed
    )
    print(json.dumps(summary, ensure_ascii=False, indent=2))
    if summary.get("message"):
        print(f"distill: generate {summary['status']}: {summary['message']}", file=sys.stderr)
    return EXIT_CODES.get(summary["status"], 1)


def _export(args: argparse.Namespace) -> int:
    from distill.engine.export import FORMATS, export_dataset

    formats = FORMATS if args.format == "both" else (args.format,)
    result = export_dataset(
        args.run_dir,
        args.out_dir,
        formats=formats,
        with_thinking=args.with_thinking,
        name=args.name,
        review=args.review,
    )
    print(json.dumps(result, ensure_ascii=False, indent=2))
    return 0
