"""`distill generate` and `distill export`: their flags come from GenerateConfig and ExportConfig.

The work is imported inside ``run`` so `distill --help` stays instant.
"""

from __future__ import annotations

import argparse
import json
import sys

from distill.engine.batch import commands as batch_commands
from distill.engine.config import ExportConfig, GenerateConfig

from distill.options import Command

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


class GenerateCommand(Command):
    name = "generate"
    help = "call the teacher for every input and write resumable CoT shards"
    description = (
        "Stream inputs to an OpenAI-compatible teacher under rate limits, parse and filter the "
        "chain-of-thought answers, and write accepted/rejected/failed JSONL shards that resume exactly-once."
    )
    epilog = GENERATE_EPILOG
    config = GenerateConfig

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
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
        parser.add_argument(
            "--no-progress", action="store_true", help="no live display or progress log lines"
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="validate everything, print the requests it would send and their estimated tokens and cost "
            "range; send nothing, write nothing",
        )

    def run(self, config: GenerateConfig, args: argparse.Namespace) -> int:
        from distill.engine.runner import EXIT_CODES, run_generation

        if args.dry_run:
            from distill.engine.dryrun import dry_run

            print(json.dumps(dry_run(config), ensure_ascii=False, indent=2))
            return 0

        summary = run_generation(
            config, force=args.force, progress=not args.no_progress, retry_failed=args.retry_failed
        )
        print(json.dumps(summary, ensure_ascii=False, indent=2))
        if summary.get("message"):
            print(f"distill: generate {summary['status']}: {summary['message']}", file=sys.stderr)
        return EXIT_CODES.get(summary["status"], 1)


class ExportCommand(Command):
    name = "export"
    help = "turn a run's accepted records into alpaca/sharegpt training files"
    description = "Convert accepted records into LLaMA-Factory / datasets training files."
    epilog = EXPORT_EPILOG
    config = ExportConfig

    def run(self, config: ExportConfig, args: argparse.Namespace) -> int:
        from distill.engine.export import FORMATS, export_dataset

        from distill.review.decisions import ReviewFilter

        formats = FORMATS if config.format == "both" else (config.format,)
        result = export_dataset(
            config.run_dir,
            config.out_dir,
            formats=formats,
            with_thinking=config.with_thinking,
            name=config.name,
            # Human review (`distill review`): keep only what its decisions allow, edited answers in place.
            review=ReviewFilter(config.run_dir, config.review) if config.review is not None else None,
        )
        print(json.dumps(result, ensure_ascii=False, indent=2))
        return 0


COMMANDS = (GenerateCommand(), ExportCommand())


def register(commands: argparse._SubParsersAction) -> None:
    """``distill batches status|cancel`` (a command with actions of its own, built by hand)."""
    batch_commands.register(commands)
