"""Every batch file from plan to record: submit, track, collect, and send again what a batch left unanswered.

The run directory's journal says where each file stands; the driver moves each one forward, concurrently
and independently, and every step that costs money is first written to the journal (see `journal`). A
``distill generate`` stopped at any instant (Ctrl-C, ``kill -9``, a lost machine) and run again picks up
each file where the journal left it, asking the provider only about the steps whose answer was lost.

Per file: upload (unless found already uploaded) → budget check → create (unless found already created)
→ poll with backoff until the batch ends → download and collect its output and error files through the
record writer → settle the requests left without a record (a new batch file, the online path, or failure
records once ``max_resends`` is spent).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

from distill.engine.batch.collect import CollectCounts, Collector, ResultSink, line_byte_limit
from distill.engine.batch.journal import (
    BATCHES_OPEN,
    ENDED,
    ONLINE_REST,
    SETTLED_CANCELLED,
    SETTLED_COMPLETE,
    SETTLED_GAVE_UP,
    SETTLED_ONLINE,
    SETTLED_RESENT,
    BatchFile,
    Journal,
)
from distill.engine.batch.openai_batches import OpenAIBatches, ProviderError, batch_summary
from distill.engine.batch.plan import (
    RequestBody,
    RowTracker,
    index_path,
    input_path,
    plan_requests,
    plan_resend,
    read_index,
    read_index_keys,
)
from distill.engine.batch.progress import BatchProgress
from distill.engine.batch.settings import BatchSettings
from distill.engine.config import GenerateConfig
from distill.engine.cost import CostMeter
from distill.engine.errors import SERVER_ERROR
from distill.engine.inputs import InputFileInfo, RowLookup
from distill.engine.jobs import make_jobs
from distill.engine.ledger import Ledger
from distill.engine.resume import ResumePosition
from distill.engine.types import CallFailure

from distill.endpoint import Price, normalise_base_url

COMPLETE = "complete"
BUDGET = "budget_reached"
FATAL = "fatal"
INTERRUPTED = "interrupted"

OUTPUT_SUFFIX = ".output.jsonl"
ERRORS_SUFFIX = ".errors.jsonl"


class PreparedRunDir(Protocol):
    """What the driver needs of a run directory the runner opened (validated, locked, reconciled)."""

    config: GenerateConfig
    run_dir: Path
    template: str
    input_info: InputFileInfo
    ledger: Ledger
    position: ResumePosition

    @property
    def total(self) -> int: ...


def batch_price(price: Price | None, settings: BatchSettings) -> Price | None:
    """The batch price of the teacher: ``price_factor`` of its online price."""
    if price is None:
        return None
    return Price(
        input_per_million=price.input_per_million * settings.price_factor,
        output_per_million=price.output_per_million * settings.price_factor,
        currency=price.currency,
    )


@dataclass
class BatchOutcome:
    status: str
    message: str | None = None
    collected: CollectCounts = field(default_factory=CollectCounts)
    files: dict[str, int] = field(default_factory=dict)  # batch files by stage
    batch_ids: list[str] = field(default_factory=list)  # batches still open at the provider

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "files_by_stage": self.files,
            "open_batch_ids": self.batch_ids,
            "collected_lines": vars(self.collected),
        }


class _Known:
    """``done`` for make_jobs: keys with a record, or waiting in a batch file of an earlier pass."""

    def __init__(self, done: set[int], in_flight: set[int]) -> None:
        self.done = done
        self.in_flight = in_flight

    def __bool__(self) -> bool:
        return bool(self.done) or bool(self.in_flight)

    def __contains__(self, key: object) -> bool:
        return key in self.done or key in self.in_flight


class BatchDriver:
    def __init__(
        self,
        run: PreparedRunDir,
        journal: Journal,
        provider: OpenAIBatches,
        *,
        write: ResultSink,
        cost: CostMeter,
        request_body: RequestBody,
    ) -> None:
        self.run = run
        self.config = run.config
        self.settings: BatchSettings = run.config.batch
        self.journal = journal
        self.provider = provider
        self.write = write
        self.cost = cost
        self.request_body = request_body
        self.done = run.ledger.done
        self.collected = CollectCounts()
        self.fatal: str | None = None
        self.stalled: dict[str, str] = {}  # file → why the provider could not be reached for it this time
        self.budget_held: set[str] = set()
        self._budget_freed = asyncio.Event()
        self._reserved: set[str] = set()
        self._processing = asyncio.Lock()  # one result file is turned into records at a time
        self._tasks: set[asyncio.Task] = set()
        self.lookup: RowLookup | None = None

    # -- planning ---------------------------------------------------------------------------------------

    def record_config(self) -> None:
        """Keep the settings beside the journal, so ``distill batches cancel RUN_DIR`` needs no config file."""
        config = self.config.model_dump(mode="json")
        # Absolute, so the cancel command works from any directory.
        config["input"] = str(self.config.input.resolve())
        config["output_dir"] = str(self.config.output_dir.resolve())
        if self.journal.config != config:
            self.journal.append({"event": "config", "config": config})

    def _outstanding(self, files: list[BatchFile]) -> set[int]:
        keys: set[int] = set()
        for entry in files:
            keys.update(
                key for key in read_index_keys(index_path(self.journal, entry.name)) if key not in self.done
            )
        return keys

    def plan(self) -> None:
        """Continue the plan pass a crash interrupted, or start one if some request has neither a record nor a
        batch file (first run, failures moved aside for a retry, more samples per input)."""
        journal, run = self.journal, self.run
        for entry in journal.unsettled():  # a crash between planning a resend and settling its parent
            if entry.collected and journal.child_of(entry.name) is not None:
                journal.append({"event": "settled", "file": entry.name, "how": SETTLED_RESENT})
        plan_pass = journal.current_pass
        if plan_pass is None or plan_pass.done:
            in_flight = self._outstanding(journal.unsettled())
            if run.ledger.finished + len(in_flight) >= run.total:
                return
            number = plan_pass.number + 1 if plan_pass else 1
            journal.append({"event": "pass", "pass": number, "start": list(run.position.start)})
        else:
            earlier = [entry for entry in journal.unsettled() if entry.plan_pass != plan_pass.number]
            in_flight = self._outstanding(earlier)
        plan_pass = journal.current_pass
        assert plan_pass is not None
        position = tuple(plan_pass.position) if plan_pass.position is not None else None
        if position is None:  # every row was planned; only the pass's end was not written
            journal.append({"event": "pass_done", "pass": plan_pass.number})
            return
        tracker = RowTracker(position)
        jobs = make_jobs(
            self.config,
            run.template,
            done=_Known(self.done, in_flight),  # type: ignore[arg-type]
            position=tracker,  # type: ignore[arg-type]
            derive_ids=run.input_info.derived_ids,
        )
        plan_requests(
            journal,
            jobs,
            tracker,
            request_body=self.request_body,
            max_requests=self.settings.max_requests_per_file,
            max_bytes=self.settings.max_bytes_per_file,
            input_name=str(self.config.input),
        )

    # -- the whole run ----------------------------------------------------------------------------------

    async def drive(self, *, wait: bool, only_open: bool = False) -> BatchOutcome:
        """Move every unsettled file forward (``only_open``: only those with a batch at the provider); return
        when all are settled (or submitted, without ``wait``)."""
        with RowLookup(
            self.config.input,
            self.config.id_field,
            self.config.input_field,
            derive_ids=self.run.input_info.derived_ids,
        ) as self.lookup:
            for entry in self.journal.unsettled():
                if entry.submitted or not only_open:
                    self._spawn(entry, wait)
            try:
                await self._wait_for_files()
            finally:  # a stop (Ctrl-C) or a failure: no file task may outlive the journal and the client
                for task in self._tasks:
                    task.cancel()
                await asyncio.gather(*self._tasks, return_exceptions=True)
                self._tasks.clear()
        return self.outcome()

    async def _wait_for_files(self) -> None:
        """Until every file task ends (resends add tasks); the first error other than a stalled file ends all."""
        while self._tasks:
            done, _ = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                self._tasks.discard(task)
                error = task.exception()
                if isinstance(error, ProviderError):
                    self.fatal = error.message
                    return
                if error is not None:
                    raise error

    def outcome(self) -> BatchOutcome:
        files = Counter(entry.stage for entry in self.journal.files.values())
        open_ids = [entry.batch_id for entry in self.journal.open_batches() if entry.batch_id]
        if self.fatal is not None:
            status = FATAL
        elif self.stalled:
            status = BATCHES_OPEN
        elif open_ids or any(entry.stage == "submitting" for entry in self.journal.files.values()):
            status = BATCHES_OPEN
        elif self.budget_held:
            status = BUDGET
        elif any(entry.settled == SETTLED_ONLINE for entry in self.journal.files.values()) and (
            self.run.ledger.finished < self.run.total
        ):
            status = ONLINE_REST
        elif self.journal.unsettled():
            status = BATCHES_OPEN
        else:
            status = COMPLETE
        message = self.fatal
        if message is None and self.stalled:
            name, why = next(iter(self.stalled.items()))
            message = (
                f"{len(self.stalled)} batch file(s) stopped ({name}: {why}); rerun the same command to go on"
            )
        return BatchOutcome(status, message, self.collected, dict(files), open_ids)

    def _spawn(self, entry: BatchFile, wait: bool) -> None:
        task = asyncio.get_running_loop().create_task(self._advance(entry, wait))
        self._tasks.add(task)

    async def _advance(self, entry: BatchFile, wait: bool) -> None:
        """One file's way forward. A provider that stays unreachable for it (after retries) stops this file
        only: the others go on, and a rerun continues it; a refused key or a refused request stops the run."""
        try:
            await self._advance_file(entry, wait)
        except ProviderError as error:
            if not error.transient:
                raise
            self.stalled[entry.name] = error.message

    async def _advance_file(self, entry: BatchFile, wait: bool) -> None:
        if not entry.submitted:
            await self._upload(entry)
            if not await self._budget_allows(entry, wait):
                self.budget_held.add(entry.name)
                return
            await self._create(entry)
        if not entry.ended:
            if not wait:
                await self._look(entry)
                if not entry.ended:
                    return
            else:
                await self._track(entry)
        if not entry.collected:
            await self._collect(entry)
        if entry.settled is None:
            await self._settle(entry, wait)

    # -- submission -------------------------------------------------------------------------------------

    async def _upload(self, entry: BatchFile) -> None:
        if entry.file_id is not None:
            return
        name = self.journal.upload_name(entry)
        if entry.uploading_at is not None:  # the last run died after deciding to upload: did it?
            found = await self.provider.find_file(name, entry.bytes, entry.uploading_at)
            if found is not None:
                self.journal.append({"event": "uploaded", "file": entry.name, "file_id": found})
                return
        self.journal.append({"event": "uploading", "file": entry.name})
        uploaded = await self.provider.upload(input_path(self.journal, entry.name), name)
        self.journal.append({"event": "uploaded", "file": entry.name, "file_id": uploaded.id})

    def _estimate(self, entry: BatchFile) -> float:
        return self.cost.money(entry.prompt_tokens, entry.completion_tokens)

    def _committed(self) -> float:
        """Money spent (records written) plus the estimate of every batch submitted (or about to be: it passed
        this check) and not yet collected."""
        pending = [
            entry
            for entry in self.journal.files.values()
            if not entry.collected
            and (entry.submitted or entry.creating_at is not None or entry.name in self._reserved)
        ]
        return self.cost.total_spend + sum(self._estimate(entry) for entry in pending)

    async def _budget_allows(self, entry: BatchFile, wait: bool) -> bool:
        budget = self.cost.budget
        if budget is None:
            return True
        while self._committed() + self._estimate(entry) > budget:
            # Open batches usually cost less than their estimate: wait for one to be collected, then look again.
            if not wait or self._committed() <= self.cost.total_spend:  # nothing out there will free money
                return False
            self._budget_freed.clear()
            await self._budget_freed.wait()
        self._reserved.add(entry.name)  # counted from now on, before the create's first await
        return True

    async def _create(self, entry: BatchFile) -> None:
        """Create the file's batch exactly once: never without an intent on disk, never again once the
        provider's list shows the batch an earlier intent (maybe) created."""
        journal, settings = self.journal, self.settings
        metadata = journal.metadata(entry)
        attempt = 0
        while entry.batch_id is None:
            if entry.creating_at is not None:
                found = await self.provider.find_batch(metadata, entry.creating_at)
                waited = time.time() - entry.creating_at
                if found is None and waited < settings.reconcile_grace_s:
                    # A create sent just before the crash may still be on its way to the provider's list.
                    await asyncio.sleep(settings.reconcile_grace_s - waited)
                    found = await self.provider.find_batch(metadata, entry.creating_at)
                if found is not None:
                    journal.append(
                        {"event": "created", "file": entry.name, "batch_id": found.id, "status": found.status}
                    )
                    return
            journal.append({"event": "creating", "file": entry.name, "file_id": entry.file_id})
            try:
                batch = await self.provider.create(str(entry.file_id), metadata, settings.completion_window)
            except ProviderError as error:
                attempt += 1
                if not error.transient or attempt >= settings.call_attempts:
                    raise
                await asyncio.sleep(min(settings.poll_max_s, settings.poll_initial_s * attempt))
                continue  # the loop looks for the batch before any new create
            journal.append(
                {"event": "created", "file": entry.name, "batch_id": batch.id, "status": batch.status}
            )

    # -- tracking ---------------------------------------------------------------------------------------

    async def _look(self, entry: BatchFile) -> bool:
        """One look at the batch; True when its state or counts changed."""
        batch = await self.provider.retrieve(str(entry.batch_id))
        summary = batch_summary(batch, self.provider.scrub)
        changed = (summary["status"], summary["request_counts"]) != (entry.status, entry.request_counts)
        if batch.status in ENDED:
            self.journal.append({"event": "ended", "file": entry.name, **summary})
        elif summary["status"] != entry.status:
            self.journal.append({"event": "status", "file": entry.name, **summary})
        else:
            entry.request_counts = summary["request_counts"]  # progress only: not worth a journal line
        return changed

    async def _track(self, entry: BatchFile) -> None:
        delay = self.settings.poll_initial_s
        while not entry.ended:
            if await self._look(entry):
                delay = self.settings.poll_initial_s
            else:
                delay = min(self.settings.poll_max_s, delay * 1.5)
            if not entry.ended:
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))

    # -- collection -------------------------------------------------------------------------------------

    def _collector(self) -> Collector:
        assert self.lookup is not None
        return Collector(
            lookup=self.lookup,
            task=self.config.task,
            model=self.config.teacher.model,
            max_tokens=self.config.max_tokens,
            write=self.write,
            done=self.done,
            scrub=self.provider.scrub,
            max_line_bytes=line_byte_limit(self.config.teacher, self.config.max_tokens),
        )

    async def _collect(self, entry: BatchFile) -> None:
        journal = self.journal
        index = read_index(index_path(journal, entry.name))
        # A file holds at most one line per request the batch was sent. Twice what those lines can take leaves
        # room for a few oversized lines, each refused on its own while the rest is collected; a file beyond that
        # is a provider filling the disk, refused unread.
        collector = self._collector()
        max_bytes = 2 * len(index) * collector.max_line_bytes
        results = []
        for file_id, suffix in ((entry.output_file_id, OUTPUT_SUFFIX), (entry.error_file_id, ERRORS_SUFFIX)):
            if file_id:
                path = journal.dir / (entry.name + suffix)
                if not path.exists():  # downloads are renamed into place only when complete
                    await self.provider.download(file_id, path, max_bytes)
                results.append(path)
        counts = CollectCounts()
        async with self._processing:
            latency_ms = 1000.0 * float(entry.turnaround_s or 0.0)
            for path in results:
                counts.add(await collector.collect(path, index, latency_ms))
            leftover = sum(1 for custom_id in index if int(custom_id, 16) not in self.done)
        self.collected.add(counts)
        journal.append({"event": "collected", "file": entry.name, "leftover": leftover, **vars(counts)})
        if not self.settings.keep_files:
            for path in results:
                path.unlink(missing_ok=True)
        self._budget_freed.set()

    # -- what a batch left unanswered -------------------------------------------------------------------

    async def _settle(self, entry: BatchFile, wait: bool) -> None:
        journal = self.journal
        index = read_index(index_path(journal, entry.name))
        unanswered = {int(custom_id, 16) for custom_id in index} - self.done
        if not unanswered:
            how = SETTLED_COMPLETE
        elif entry.cancel_requested:
            how = SETTLED_CANCELLED
        elif entry.depth >= self.settings.max_resends:
            self._give_up(entry, index, unanswered)
            how = SETTLED_GAVE_UP
        elif self.settings.fallback == "online":
            how = SETTLED_ONLINE
        else:
            child = journal.child_of(entry.name) or plan_resend(journal, entry, unanswered)
            self._spawn(child, wait)
            how = SETTLED_RESENT
        journal.append({"event": "settled", "file": entry.name, "how": how})
        if not self.settings.keep_files and how != SETTLED_ONLINE:
            input_path(journal, entry.name).unlink(missing_ok=True)
            index_path(journal, entry.name).unlink(missing_ok=True)

    def _give_up(self, entry: BatchFile, index: dict, unanswered: set[int]) -> None:
        collector = self._collector()
        message = (
            f"not answered: the batch ended {entry.status} and its requests were sent again "
            f"{entry.depth} time(s) without an answer"
        )
        if entry.error:
            message += f"; the provider said {entry.error}"
        for custom_id, place in index.items():
            key = int(custom_id, 16)
            if key in unanswered and key not in self.done:
                self.write(
                    collector.job_for(custom_id, place), CallFailure(SERVER_ERROR, message, None, 1, True)
                )
                self.done.add(key)

    # -- cancel -----------------------------------------------------------------------------------------

    async def cancel_open(self) -> list[str]:
        """Ask the provider to cancel every open batch of this run; return their ids."""
        cancelled = []
        for entry in self.journal.open_batches():
            if entry.ended:
                continue
            self.journal.append({"event": "cancel", "file": entry.name})
            with contextlib.suppress(ProviderError):  # already ended: it is collected like any other
                await self.provider.cancel(str(entry.batch_id))
            cancelled.append(str(entry.batch_id))
        return cancelled


async def run_batches(
    run: PreparedRunDir,
    *,
    api_key: str | None,
    write: ResultSink,
    cost: CostMeter,
    request_body: RequestBody,
    progress: bool = True,
    progress_stream: TextIO | None = None,
    cancel: bool = False,
) -> BatchOutcome:
    """Plan what is not planned, then drive every batch file of the run (see the module docstring).

    ``cancel``: plan and submit nothing; ask the provider to cancel every open batch, then collect what each
    returns (its unanswered requests wait for the next ``distill generate``)."""
    settings: BatchSettings = run.config.batch
    teacher = run.config.teacher
    journal = Journal(run.run_dir)
    provider = OpenAIBatches(
        normalise_base_url(teacher.base_url),
        api_key,
        headers=teacher.headers,
        timeout_s=teacher.request_timeout_s,
        max_concurrent=settings.max_concurrent_calls,
        call_attempts=settings.call_attempts,
        download_attempts=settings.download_attempts,
    )
    driver = BatchDriver(run, journal, provider, write=write, cost=cost, request_body=request_body)
    reporter = BatchProgress(journal, cost, run.total, run.ledger, enabled=progress, stream=progress_stream)
    try:
        if cancel:
            await driver.cancel_open()
            reporter.start()
            return await driver.drive(wait=True, only_open=True)
        driver.record_config()
        driver.plan()
        reporter.start()
        return await driver.drive(wait=settings.wait)
    finally:
        await reporter.stop()
        await provider.close()
        journal.close()
