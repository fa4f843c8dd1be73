"""`distill run CONFIG`: the whole distillation, one stage after another, resumable.

data → generate (engine, resumable by itself) → references (the held-out set's, from the teacher when the
task has none) → export → train (trainer) → evaluate (evaluator: base
student, distilled student, teacher) → report. Each stage is a module with one small interface
(``pipeline.context.Stage``); this module orders them, checks them all before the first one runs, and skips a
stage whose marker says it finished for the same inputs (``pipeline.markers``). Servers (reference teacher,
vLLM) start only when a stage that needs them runs, and stop when the run ends, fails or is interrupted
(Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import contextlib
import fcntl
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from distill.errors import UserError
from distill.pipeline import (
    stage_data,
    stage_evaluate,
    stage_export,
    stage_generate,
    stage_references,
    stage_report,
    stage_train,
)
from distill.pipeline.config import LoadedRunConfig
from distill.pipeline.console import say
from distill.pipeline.context import Stage, StageContext
from distill.pipeline.markers import StageBook, StageRecord
from distill.pipeline.services import Services
from distill.pipeline.task import task_view

STAGES: tuple[Stage, ...] = (
    stage_data,
    stage_generate,
    stage_references,
    stage_export,
    stage_train,
    stage_evaluate,
    stage_report,
)


def _run_stage(book: StageBook, stage: Stage, context: StageContext, force: bool) -> StageRecord:
    key = stage.key(context)
    if not force:
        done = book.completed(stage.NAME, key)
        if done is not None:
            say(
                f"{stage.NAME}: already complete for this config ({done.seconds:.0f} s when it ran) — skipped"
            )
            return done
    say(f"{stage.NAME}: running")
    started = book.start(stage.NAME)
    outputs, details = stage.run(context)
    record = book.finish(stage.NAME, key, started, outputs, details)
    say(f"{stage.NAME}: done in {record.seconds:.1f} s")
    return record


@contextlib.contextmanager
def _run_lock(run_dir: Path) -> Iterator[None]:
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / ".run.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"{run_dir}: another `distill run` is using this output_dir right now") from None
        yield


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so servers and child processes are stopped on the way out."""

    def interrupt(signum, frame):  # noqa: ARG001 - signal handler signature
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_pipeline(loaded: LoadedRunConfig, *, force: bool = False) -> int:
    """Run (or resume) every stage of a loaded config (`distill run`'s file and flags, or ``load_run_config``);
    returns the process exit status."""
    run_dir = loaded.config.output_dir
    started = time.monotonic()
    with _run_lock(run_dir), sigterm_as_interrupt(), contextlib.ExitStack() as stack:
        services = Services(loaded.config, run_dir, stack)
        context = StageContext(loaded=loaded, run_dir=run_dir, services=services, task=task_view(loaded))
        for stage in STAGES:  # every check before the first stage runs or any server starts
            stage.check(context)
        book = StageBook(run_dir)
        for stage in STAGES:
            context.records[stage.NAME] = _run_stage(book, stage, context, force)
            if stage is stage_data:
                services.known_answers = context.records[stage.NAME].outputs
    total = time.monotonic() - started
    say(f"finished in {total:.0f} s; report: {run_dir / 'report.md'}")
    sys.stdout.flush()
    return 0
