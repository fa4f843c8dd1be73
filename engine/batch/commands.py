"""``distill batches status|cancel RUN_DIR``: look at a run's provider batches, or cancel the open ones."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from distill.engine.batch.journal import Journal
from distill.engine.config import GenerateConfig, load_generate_config

from distill.errors import UserError

EPILOG = """\
examples:
  distill batches status runs/contracts     # what the journal knows: files, batch ids, states, counts
  distill batches cancel runs/contracts     # cancel every open batch, then record what each returned

A cancelled batch's unanswered requests are sent again by the next `distill generate` of the run.
"""


_RUN_DIR_HELP = "the run directory (the output_dir of its `distill generate --mode batch`)"


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "batches",
        help="look at or cancel a run's provider batches (generate --mode batch)",
        description="Look at, or cancel, the provider batches of a `distill generate --mode batch` run.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="batches_command", required=True, metavar="ACTION")
    status = actions.add_parser(
        "status",
        help="the run's batch files and batches, from its journal",
        description="Print, as JSON, what the run's journal knows: each batch file's stage, batch id, state "
        "and request counts. Reads only the run directory: it asks the provider nothing (a running "
        "`distill generate` keeps the journal current).",
    )
    status.add_argument("run_dir", type=Path, metavar="RUN_DIR", help=_RUN_DIR_HELP)
    status.set_defaults(handler=_status)
    cancel = actions.add_parser(
        "cancel",
        help="cancel the run's open batches and record what comes back",
        description="Ask the provider to cancel every open batch of the run, wait for each to end, and write "
        "the records of the requests that finished before it did. The unanswered rest is sent again by the "
        "next `distill generate` of the run. Stop a running `distill generate` of the run first: both take "
        "the run directory's lock.",
    )
    cancel.add_argument("run_dir", type=Path, metavar="RUN_DIR", help=_RUN_DIR_HELP)
    cancel.add_argument("--config", help="the run's config (default: the settings its last generate used)")
    cancel.add_argument("--no-progress", action="store_true", help="no live display or progress log lines")
    cancel.set_defaults(handler=_cancel)


def _journal(run_dir: Path) -> Journal:
    if not Journal.exists(run_dir):
        raise UserError(
            f"{run_dir}: no batches here (no `distill generate --mode batch` ran in this directory)"
        )
    return Journal(run_dir, read_only=True)


def batch_status(run_dir: Path) -> dict[str, Any]:
    journal = _journal(run_dir)
    files = [
        {
            "file": entry.name,
            "requests": entry.requests,
            "stage": entry.stage,
            "batch_id": entry.batch_id,
            "request_counts": entry.request_counts or None,
            "resend_of": entry.parent,
            "settled": entry.settled,
        }
        for entry in journal.files.values()
    ]
    stages: dict[str, int] = {}
    for item in files:
        stages[item["stage"]] = stages.get(item["stage"], 0) + 1
    return {"run_dir": str(run_dir), "files_by_stage": stages, "files": files}


def _status(args: argparse.Namespace) -> int:
    print(json.dumps(batch_status(args.run_dir), ensure_ascii=False, indent=2))
    return 0


def _cancel(args: argparse.Namespace) -> int:
    # The runner brings the HTTP clients and the openai SDK: loaded only when a command runs.
    from distill.engine.runner import EXIT_CODES, FATAL, generate_in_batches, prepare_run

    journal = _journal(args.run_dir)
    if args.config:
        config = load_generate_config(args.config, {"output_dir": str(args.run_dir)})
    elif journal.config is not None:
        config = GenerateConfig.model_validate({**journal.config, "output_dir": str(args.run_dir)})
    else:
        raise UserError(f"{args.run_dir}: the journal holds no settings: pass --config with the run's config")
    run = prepare_run(config)
    try:
        summary = asyncio.run(generate_in_batches(run, progress=not args.no_progress, cancel=True))
    finally:
        run.close()
    print(json.dumps(summary, ensure_ascii=False, indent=2))
    return EXIT_CODES[FATAL] if summary["status"] == FATAL else 0
