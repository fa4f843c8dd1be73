"""`distill review`: the review page over a run directory or an evaluation directory."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import secrets
import sys

from distill.endpoint import is_loopback
from distill.errors import UserError
from distill.options import Command
from distill.review.config import ReviewConfig

REVIEW_EPILOG = """\
examples:
  distill review runs/contracts                    # then open the printed URL (127.0.0.1 only)
  distill review runs/contracts --config review.yaml --reviewer ana --port 8800
  distill review --eval runs/eval                  # blind student-vs-teacher comparison
  distill review runs/contracts --report           # counts, and how often people overruled the judge
  distill export --run-dir runs/contracts --out-dir data/ --review approved

Keys on the page: a approve, r reject (type a reason, Enter), e edit the answer (Ctrl+Enter saves), u back
to unreviewed, j/k next/previous, / search. Every decision is appended to RUN_DIR/review/decisions.jsonl
and synced to disk before the page shows it as saved; the run's shards are never changed.
"""


class ReviewCommand(Command):
    name = "review"
    help = "review a run's records (or student vs teacher answers) in a local web page"
    description = (
        "Start a local web page to read, approve, reject and edit a run's records, or to compare student and "
        "teacher answers blind on an evaluation. Nothing leaves this machine."
    )
    epilog = REVIEW_EPILOG
    config = ReviewConfig

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "run_dir", nargs="?", metavar="RUN_DIR", help="a `distill generate` output directory"
        )
        parser.add_argument(
            "--eval",
            dest="eval_dir",
            metavar="EVAL_DIR",
            help="review a `distill eval` output directory instead: student vs teacher, blind",
        )
        parser.add_argument(
            "--port", type=int, default=8765, help="port to listen on (default 8765; 0: any free port)"
        )
        parser.add_argument(
            "--host",
            default="127.0.0.1",
            help="address to listen on (default 127.0.0.1); any other needs the printed access token",
        )
        parser.add_argument(
            "--no-judge", action="store_true", help="skip the judge's scoring even if configured"
        )
        parser.add_argument("--report", action="store_true", help="print the review report as JSON and exit")
        parser.add_argument(
            "--finish",
            action="store_true",
            help="mark the review finished (what `distill run` with review: required waits for) and exit",
        )

    def run(self, config: ReviewConfig, args: argparse.Namespace) -> int:
        return _review(config, args)


COMMANDS = (ReviewCommand(),)


def _say(message: str) -> None:
    """Progress and notes go to stderr: stdout carries only the page's URL or the JSON asked for."""
    print(f"distill review: {message}", file=sys.stderr, flush=True)


def _print_url(message: str) -> None:
    print(f"distill review: {message}", flush=True)


def _review(config: ReviewConfig, args: argparse.Namespace) -> int:
    from distill.review.decisions import load_state
    from distill.review.judging import score_run, threshold_entries
    from distill.review.pairs import EvalReview
    from distill.review.scores import read as read_scores
    from distill.review.server import page_url, serve
    from distill.review.session import RunReview

    if (args.run_dir is None) == (args.eval_dir is None):
        raise UserError("give a RUN_DIR, or --eval EVAL_DIR (one of the two)")
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port: {args.port} is not a port number (0–65535)")
    reviewer = config.reviewer or getpass.getuser()
    if args.eval_dir is not None:
        if args.finish:
            raise UserError("--finish is for a run's review, not --eval")
        session = EvalReview(args.eval_dir, reviewer)
    else:
        session = RunReview(args.run_dir, config, reviewer, live=not (args.report or args.finish))
        if config.judge is not None and not args.no_judge and not args.finish:
            score_run(session.run_dir, config.judge, say=_say)
            entries = threshold_entries(
                load_state(session.run_dir),
                read_scores(session.run_dir),
                config.judge.threshold,
                f"judge {config.judge.model}",
            )
            session.append_judge(entries)
            session.reload_scores()
            if entries:
                _say(f"judge: {len(entries)} low_score decisions logged (threshold {config.judge.threshold})")
    try:
        if args.report:
            print(json.dumps(session.report(), ensure_ascii=False, indent=2))
            return 0
        if args.finish:
            print(json.dumps(session.finish(), ensure_ascii=False))
            return 0
        token = None if is_loopback(page_url(args.host, args.port, None)) else secrets.token_urlsafe(24)
        try:
            asyncio.run(serve(session, host=args.host, port=args.port, token=token, say=_print_url))
        except KeyboardInterrupt:
            pass
        _say("stopped; every decision shown as saved is in the log")
        return 0
    finally:
        session.close()
