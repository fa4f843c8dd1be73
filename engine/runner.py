"""`run_generation(config)`: everything `distill generate` does, start to summary.

Before a single request (so before any money is spent): the template, the API key, every input line, the
output directory (writable, locked against a second process, enough free space), the fingerprint in
run.json, torn shard lines, and whether the endpoint answers at all. Then the dispatcher streams the jobs
and `RecordWriter` writes each result. The summary is written to summary.json at the end and on every
early stop (budget, Ctrl-C, fatal error, full disk).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import orjson
from distill.engine import filters
from distill.engine.batch.journal import BATCHES_OPEN, ONLINE_REST, refuse_open_batches
from distill.engine.client import request_body
from distill.engine.collector import fewer_collections
from distill.engine.config import GenerateConfig
from distill.engine.cost import CostMeter
from distill.engine.dispatch import BUDGET as DISPATCH_BUDGET
from distill.engine.dispatch import FATAL as DISPATCH_FATAL
from distill.engine.filters import QualityFilter
from distill.engine.inputs import InputFileInfo, iter_inputs, validate_inputs
from distill.engine.jobs import make_jobs
from distill.engine.ledger import ACCEPTED, FAILED, REJECTED, Ledger
from distill.engine.manifest import fingerprint_of, open_manifest, read_manifest, utc_now, write_manifest
from distill.engine.progress import ProgressReporter
from distill.engine.prompts import build_instruction, load_template
from distill.engine.records import iter_records
from distill.engine.resume import (
    ResumePosition,
    check_shards,
    move_failures_aside,
    reconcile,
    retry_failed_pending,
    scan_input_drift,
)
from distill.engine.rundir import SUMMARY_NAME, check_run_dir, lock_run_dir
from distill.engine.session import EndpointSession, open_session
from distill.engine.shards import DiskFullError, ShardSet, list_shards
from distill.engine.writer import RecordWriter, RunStats

from distill.endpoint import resolve_api_key
from distill.errors import UserError
from distill.files import write_atomically

COMPLETE = "complete"
BUDGET = "budget_reached"
INTERRUPTED = "interrupted"
FATAL = "fatal"
DISK_FULL = "disk_full"
STOPPED = "stopped"
TARGET = "target_reached"
CANDIDATES = "candidate_cap_reached"
# `distill generate`'s exit status for each way a run can end.
EXIT_CODES = {
    COMPLETE: 0,
    TARGET: 0,
    FATAL: 2,
    BUDGET: 3,
    DISK_FULL: 4,
    STOPPED: 5,
    BATCHES_OPEN: 6,
    CANDIDATES: 7,
    INTERRUPTED: 130,
}


@dataclass
class PreparedRun:
    """A run directory opened for writing: validated, locked, repaired, reconciled."""

    config: GenerateConfig
    run_dir: Path
    template: str
    input_info: InputFileInfo
    shards: ShardSet
    ledger: Ledger
    lock_fd: int
    position: ResumePosition
    repairs: dict[str, Any] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)  # what start-up repaired, said once on stderr
    # Records whose rows left the input (it shrank, or samples_per_input did): kept, but not "done".
    orphaned: int = 0

    @property
    def done_before(self) -> int:
        return max(0, self.ledger.finished - self.orphaned)

    @property
    def total(self) -> int:
        return self.input_info.rows * self.config.samples_per_input

    def close(self) -> None:
        self.shards.close()
        self.ledger.close()
        os.close(self.lock_fd)


def _input_info(config: GenerateConfig, manifest: dict[str, Any] | None) -> tuple[InputFileInfo, bool]:
    """Validate the input, unless run.json shows this exact file (size, mtime, fields) was validated."""
    cached = (manifest or {}).get("input")
    if (
        cached
        and cached.get("id_field") == config.id_field
        and cached.get("input_field") == config.input_field
    ):
        info = InputFileInfo(
            cached["path"], cached["size"], cached["mtime_ns"], cached["rows"], cached["derived_ids"]
        )
        with contextlib.suppress(OSError):
            if info.still_matches(config.input):
                return info, False
    return validate_inputs(config.input, config.id_field, config.input_field), bool(cached)


def prepare_run(
    config: GenerateConfig, *, force: bool = False, retry_failed_records: bool = False
) -> PreparedRun:
    """Every check that can fail before spending money, then the run directory opened for appending."""
    template = load_template(config.template)
    for endpoint in config.endpoints:  # a missing key fails here, before the run directory is touched
        resolve_api_key(endpoint)
    run_dir = config.output_dir
    check_run_dir(run_dir)
    # Inputs first: a bad line must not even create the output directory.
    info, input_changed = _input_info(config, read_manifest(run_dir) if run_dir.is_dir() else None)
    lock_fd = lock_run_dir(run_dir)
    shards = ledger = None
    try:
        manifest, changes = open_manifest(
            run_dir, fingerprint_of(config, template), force=force, has_records=bool(list_shards(run_dir))
        )
        # run.json comes first, so a directory with distill files in it always says it is a distill run.
        write_manifest(run_dir, manifest)
        moved = move_failures_aside(run_dir) if retry_failed_records or retry_failed_pending(run_dir) else 0
        shards = ShardSet(run_dir, config.shard_max_bytes)
        ledger = Ledger(run_dir)
        added = reconcile(ledger, list_shards(run_dir))
        ledger, check = check_shards(run_dir, ledger)
        orphaned = manifest.get("records_of_removed_rows", 0)
        notices = [check.describe()] if check.rebuilt else []
        if (changes or input_changed or check.rebuilt) and ledger.finished:
            drift = scan_input_drift(run_dir, ledger, _instructions(config, info), config.samples_per_input)
            if drift.edited and not force:
                raise UserError(drift.refusal(config.input, config.input_field))
            if drift.edited:
                notices.append(
                    f"{len(drift.edited)} edited input row(s) keep their records made from the old text"
                )
            orphaned = manifest["records_of_removed_rows"] = drift.orphaned
        # Rows behind the old watermark may have new work now (more samples, retried or lost records), so
        # the position starts over; this is stored before run.json records the new input as validated.
        position = ResumePosition(ledger, discard=bool(changes or input_changed or moved or check.rebuilt))
        manifest["input"] = {
            "path": info.path,
            "size": info.size,
            "mtime_ns": info.mtime_ns,
            "rows": info.rows,
            "derived_ids": info.derived_ids,
            "id_field": config.id_field,
            "input_field": config.input_field,
        }
        write_manifest(run_dir, manifest)
    except BaseException:
        for opened in (shards, ledger):
            if opened is not None:
                opened.close()
        os.close(lock_fd)
        raise
    repairs = {
        "torn_shard_bytes": shards.torn_bytes,
        "torn_ledger_bytes": ledger.torn_bytes,
        "ledger_entries_restored": added,
        "failed_records_moved_aside": moved,
        "ledger_rebuilt_from_shards": check.rebuilt,
        "records_missing_from_shards": check.entries_without_record,
    }
    return PreparedRun(
        config, run_dir, template, info, shards, ledger, lock_fd, position, repairs, notices, orphaned
    )


def _instructions(config: GenerateConfig, info: InputFileInfo) -> Iterator[tuple[str, str, int]]:
    for row in iter_inputs(config.input, config.id_field, config.input_field, derive_ids=info.derived_ids):
        yield row.id, build_instruction(config.task, row.text), row.line


def summarise(
    run: PreparedRun, stats: RunStats, cost: CostMeter, status: str, **extra: Any
) -> dict[str, Any]:
    ledger = run.ledger
    rejected = ledger.rejected_by_reason(filters.REASONS)
    done = max(0, ledger.finished - run.orphaned)
    return {
        "status": status,
        **extra,
        "output_dir": str(run.run_dir),
        "total": run.total,
        "done": done,
        "remaining": max(0, run.total - done),
        "records_of_rows_no_longer_in_the_input": run.orphaned,
        "records": {
            "accepted": ledger.count(ACCEPTED),
            "rejected": ledger.count(REJECTED),
            "failed": ledger.count(FAILED),
        },
        "rejected_by_reason": rejected,
        "session": {
            "records": stats.finished,
            "accepted": stats.accepted,
            "rejected_by_reason": dict(stats.rejected),
            "failed_by_class": dict(stats.failed),
            "elapsed_s": round(stats.elapsed_s, 3),
            "records_per_s": round(stats.finished / stats.elapsed_s, 2) if stats.elapsed_s > 0 else 0.0,
        },
        "cost": cost.as_dict(),
        **(
            {
                "agreement": {
                    "inputs_compared": stats.agreement_inputs,
                    "mean_rate": round(stats.agreement_sum / stats.agreement_inputs, 4)
                    if stats.agreement_inputs
                    else None,
                    "flagged_inputs": stats.agreement_flagged,
                }
            }
            if run.config.filters.agreement
            else {}
        ),
        "repairs": run.repairs,
        "finished_at": utc_now(),
    }


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    write_atomically(run_dir / SUMMARY_NAME, orjson.dumps(summary, option=orjson.OPT_INDENT_2))


async def generate(
    run: PreparedRun, *, progress: bool = True, progress_stream: TextIO | None = None
) -> dict[str, Any]:
    """Send every unfinished job of a prepared run; return (and write) the summary."""
    if run.config.mode == "batch":
        summary = await generate_in_batches(run, progress=progress, progress_stream=progress_stream)
        if summary["status"] != ONLINE_REST:
            return summary
    else:
        refuse_open_batches(run.run_dir)
    async with open_session(run.config.endpoints) as session:
        return await _generate(run, session, progress=progress, progress_stream=progress_stream)


async def generate_in_batches(
    run: PreparedRun,
    *,
    progress: bool = True,
    progress_stream: TextIO | None = None,
    cancel: bool = False,
) -> dict[str, Any]:
    """``mode: batch``: the same records through the provider's batch API (engine/batch); same summary.
    ``cancel``: cancel the run's open batches instead, and record what they return."""
    # The batch driver brings the openai SDK (0.8 s of CPU to import): only batch runs pay for it.
    from distill.engine.batch.driver import batch_price, run_batches

    config, ledger = run.config, run.ledger
    stats = RunStats(run.total, ledger.finished)
    cost = CostMeter(
        batch_price(config.teacher.price, config.batch),
        config.budget,
        prior_prompt_tokens=ledger.prompt_tokens,
        prior_completion_tokens=ledger.completion_tokens,
    )
    # A budget reached while collecting stops new batches (the driver checks), never a collection.
    writer = _record_writer(run, cost, stats, asyncio.Event())
    task = asyncio.ensure_future(
        run_batches(
            run,
            api_key=resolve_api_key(config.teacher),
            write=writer,
            cost=cost,
            request_body=lambda job: request_body(job.request, config.teacher.max_tokens_field),
            progress=progress,
            progress_stream=progress_stream,
            cancel=cancel,
        )
    )
    extra: dict[str, Any] = {"mode": "batch"}
    # Every step is safe to stop at: the first Ctrl-C stops at once; batches keep running at the provider.
    with _cancel_on_signal(task) as signalled:
        try:
            outcome = await task
        except DiskFullError as exc:
            status, extra["message"] = DISK_FULL, f"{exc.strerror}; free space, then rerun the same command"
        except asyncio.CancelledError:
            if not signalled:
                raise
            status = INTERRUPTED
            extra["message"] = (
                "stopped; batches already submitted keep running: rerun the same command to collect"
            )
        else:
            status = outcome.status
            extra["batches"] = outcome.as_dict()
            if outcome.message:
                extra["message"] = outcome.message
            elif status == BATCHES_OPEN:
                extra["message"] = (
                    "batches are still running at the provider: rerun the same command to collect"
                )
    with contextlib.suppress(OSError):
        if writer.shards.broken is None:
            writer.flush_held_rows()  # self-consistency: answers already paid for are written, not re-sent
    summary = summarise(run, stats, cost, status, **extra)
    with contextlib.suppress(OSError):
        write_summary(run.run_dir, summary)
    return summary


def _near_duplicates(run: PreparedRun) -> Any:
    """The near-duplicate index, rebuilt from the accepted records on disk (none unless configured)."""
    threshold = run.config.filters.near_dedupe
    if threshold is None:
        return None
    try:  # an optional extra (it brings numpy and scipy): imported only by runs that use it
        from distill.engine.near_dedupe import NearDuplicates
    except ImportError:
        raise UserError(
            "filters.near_dedupe needs datasketch: pip install 'distill[dedupe]' (or unset near_dedupe)"
        ) from None
    index = NearDuplicates(threshold)
    index.fill((record.id, record.output) for record in iter_records(run.run_dir, kinds=("accepted",)))
    return index


def _record_writer(run: PreparedRun, cost: CostMeter, stats: RunStats, stop: asyncio.Event) -> RecordWriter:
    """The one record path, online and batch alike."""
    return RecordWriter(
        shards=run.shards,
        ledger=run.ledger,
        quality=QualityFilter(
            run.config.filters, run.ledger.accepted_answers, run.config.answer_schema, _near_duplicates(run)
        ),
        cost=cost,
        stats=stats,
        position=run.position,
        source_model=run.config.teacher.model,
        reject_truncated=run.config.filters.reject_truncated,
        stop=stop,
        target_accepted=run.config.target_accepted,
        agreement=run.config.filters.agreement and run.config.samples_per_input > 1,
        min_agreement=run.config.filters.min_agreement,
        whole_reply_is_answer=run.config.structured_output,
    )


@contextlib.contextmanager
def _cancel_on_signal(task: asyncio.Future):
    """SIGINT/SIGTERM cancel ``task``; yields a list that is non-empty once a signal came."""
    loop = asyncio.get_running_loop()
    signalled: list[int] = []
    installed = []

    def handle(signum: int) -> None:
        signalled.append(signum)
        task.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, handle, signum)
            installed.append(signum)
    try:
        yield signalled
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


async def _generate(
    run: PreparedRun, session: EndpointSession, *, progress: bool, progress_stream: TextIO | None
) -> dict[str, Any]:
    config, ledger = run.config, run.ledger
    stop = asyncio.Event()
    stats = RunStats(run.total, run.done_before)
    cost = CostMeter(
        config.teacher.price,
        config.budget,
        prior_prompt_tokens=ledger.prompt_tokens,
        prior_completion_tokens=ledger.completion_tokens,
    )
    writer = _record_writer(run, cost, stats, stop)
    jobs = make_jobs(
        config,
        run.template,
        done=ledger.done,
        position=run.position,
        derive_ids=run.input_info.derived_ids,
    )
    candidates_left = (
        None if config.max_candidates is None else max(0, config.max_candidates - ledger.finished)
    )
    if candidates_left is not None:
        jobs = itertools.islice(jobs, candidates_left)
    if writer.target_reached():
        stop.set()
    reporter = ProgressReporter(
        stats, session.lanes, cost, session.errors, enabled=progress, stream=progress_stream
    )
    interrupts = _InterruptHandler(stop, writer)
    status, extra = COMPLETE, {}
    try:
        if run.done_before < run.total and not stop.is_set() and candidates_left != 0:
            await session.check("teacher")
        if cost.over_budget:
            stop.set()
            writer.budget_reached = True
        interrupts.install()
        reporter.start()
        budget = cost if config.budget is not None else None
        task = asyncio.ensure_future(session.run(jobs, writer, stop=stop, budget=budget))
        interrupts.task = task
        try:
            outcome = await task
        except DiskFullError as exc:
            status, extra = DISK_FULL, {"message": f"{exc.strerror}; free space, then rerun the same command"}
        except asyncio.CancelledError:
            if not interrupts.count:
                raise
            status = INTERRUPTED
        else:
            extra["dispatch"] = outcome.as_dict()
            if outcome.stopped_reason == DISPATCH_FATAL and outcome.fatal is not None:
                status = FATAL
                extra["message"] = f"{outcome.fatal.error_class}: {outcome.fatal.message}"
            elif writer.target_reached():
                status = TARGET
            elif writer.budget_reached or outcome.stopped_reason == DISPATCH_BUDGET:
                status = BUDGET
            elif interrupts.count:
                status = INTERRUPTED
            elif outcome.stopped_reason is not None:
                status = STOPPED
            elif config.max_candidates is not None and ledger.finished - run.orphaned < run.total:
                status = (
                    CANDIDATES  # the cap stopped it with rows still to do (and the target, if any, unmet)
                )
    finally:
        interrupts.remove()
        await reporter.stop()
        with contextlib.suppress(OSError):
            if not writer.closed and writer.shards.broken is None:
                writer.flush_held_rows()
            writer.flush_position()
    extra["errors_by_class"] = dict(session.errors)
    extra["endpoints"] = session.endpoint_figures()
    summary = summarise(run, stats, cost, status, **extra)
    with contextlib.suppress(OSError):
        write_summary(run.run_dir, summary)
    return summary


class _InterruptHandler:
    """First Ctrl-C (or SIGTERM): admit nothing new, let requests in flight finish and be written.
    Second: abandon them (they get no record and are sent again on resume)."""

    def __init__(self, stop: asyncio.Event, writer: RecordWriter) -> None:
        self.stop = stop
        self.writer = writer
        self.count = 0
        self.task: asyncio.Future | None = None
        # Each signal taken over, with the handler it had: asyncio resets a removed handler to the default
        # (SIGTERM: kill the process), not to what the caller had installed, e.g. `distill run`'s clean stop.
        self._installed: list[tuple[int, Any]] = []

    def _handle(self) -> None:
        self.count += 1
        self.stop.set()
        if self.count == 1:
            print(
                "distill: stopping: finishing requests in flight (Ctrl-C again to abandon them)",
                file=sys.stderr,
            )
        elif self.task is not None:
            # From here on a late answer is dropped, not written: it is sent again on resume.
            self.writer.closed = True
            self.task.cancel()

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                previous = signal.getsignal(signum)
                loop.add_signal_handler(signum, self._handle)
                self._installed.append((signum, previous))

    def remove(self) -> None:
        loop = asyncio.get_running_loop()
        for signum, previous in self._installed:
            loop.remove_signal_handler(signum)
            if previous is not None:  # None: a handler not set from Python, which cannot be put back
                signal.signal(signum, previous)
        self._installed.clear()


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run_generation(
    config: GenerateConfig,
    *,
    force: bool = False,
    progress: bool = True,
    retry_failed: bool = False,
    progress_stream: TextIO | None = None,
) -> dict[str, Any]:
    """The public entry point (CLI, pipeline, benchmarks): prepare, generate, return the summary dict.

    ``summary["status"]`` says how it ended: complete, budget_reached, interrupted, fatal (a refused key or
    an exhausted account: see ``summary["message"]``), disk_full or stopped. Every status but complete
    leaves a resumable run: call it again with the same config.
    """
    run = prepare_run(config, force=force, retry_failed_records=retry_failed)
    for notice in run.notices:
        print(f"distill: {run.run_dir}: {notice}", file=sys.stderr)
    try:
        with fewer_collections(), asyncio.Runner(loop_factory=_loop_factory()) as runner:
            return runner.run(generate(run, progress=progress, progress_stream=progress_stream))
    finally:
        run.close()
