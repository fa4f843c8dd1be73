"""The intent log ``batches/journal.jsonl``: what was planned, what is about to cost money, what came back.

Every step that talks to the provider is written here, and forced to disk with ``fsync``, *before* it is
taken: ``uploading`` before a file is uploaded, ``creating`` before a batch is created (the step that spends
money); the provider's ids are written after (``uploaded``, ``created``). So after ``kill -9`` at any instant
the journal says, for every batch file, either that nothing was attempted, or which step may have happened
without its answer being recorded. Only those steps need asking the provider about (its file list by file
name, its batch list by the metadata that names this run and file); everything else is known. A batch is
created only after the provider's list was checked for it, so one set of requests never gets two batches.

One JSON object per line, appended with a single write; a line torn by a crash can only be the last one and
is cut off at open (its bytes kept in ``journal.jsonl.torn``), which loses nothing: the step it described
had not been taken yet, or is found again at the provider.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from distill.engine.shards import repair_torn_tail, write_all

from distill.errors import UserError

# Statuses of a batch run that the online runner reports too (defined here, beside the journal that decides
# them, so the online path needs neither the driver nor the openai SDK it imports).
BATCHES_OPEN = "batches_open"  # stopped (or not waiting) while batches run at the provider: rerun to collect
ONLINE_REST = "online_rest"  # batches done; the unanswered rest goes online (fallback: online)

BATCH_DIR = "batches"
JOURNAL_NAME = "journal.jsonl"

# The provider's batch states; the last four are final.
ENDED = ("completed", "failed", "expired", "cancelled")
STATES = ("validating", "in_progress", "finalizing", "cancelling", *ENDED)

# How a batch file's requests without a record were dealt with once it was collected.
SETTLED_COMPLETE = "complete"  # every request has its record
SETTLED_RESENT = "resent"  # the rest went into a new batch file (named by `child`)
SETTLED_ONLINE = "online"  # the rest were sent online
SETTLED_GAVE_UP = "gave_up"  # the rest got failure records after max_resends
SETTLED_CANCELLED = "cancelled"  # cancelled by the user: the rest wait for the next `distill generate`


@dataclass
class BatchFile:
    """Everything the journal knows about one batch input file and the batch made from it."""

    name: str
    requests: int
    bytes: int
    prompt_tokens: int  # estimated, for the budget
    completion_tokens: int  # at most: max_tokens per request
    plan_pass: int
    end: list[int] | None = None  # input position after the file's last row (for resuming a plan)
    parent: str | None = None  # a resend of this file's unanswered requests
    depth: int = 0  # how many resends deep
    uploading_at: float | None = None
    file_id: str | None = None
    creating_at: float | None = None
    batch_id: str | None = None
    status: str | None = None  # the provider's last reported state
    request_counts: dict[str, int] = field(default_factory=dict)
    output_file_id: str | None = None
    error_file_id: str | None = None
    ended: bool = False
    collected: bool = False
    records: int = 0
    leftover: int = 0
    settled: str | None = None
    cancel_requested: bool = False
    usage: dict[str, int] | None = None
    turnaround_s: float | None = None  # from creation to the end, as the provider reports them
    error: str | None = None  # why the provider failed the batch

    @property
    def submitted(self) -> bool:
        return self.batch_id is not None

    @property
    def open(self) -> bool:
        """Created at the provider and not yet collected: its requests may still be running or billed."""
        return self.submitted and not self.collected

    @property
    def stage(self) -> str:
        """Where the file is, for progress and summaries: planned, submitting, a provider state, collected..."""
        if self.settled:
            return "settled"
        if self.collected:
            return "collected"
        if self.status:
            return self.status
        if self.creating_at is not None or (self.uploading_at is not None and self.file_id is None):
            return "submitting"  # a step was started whose outcome is not known yet
        if self.file_id is not None:
            return "uploaded"
        return "planned"


@dataclass
class PlanPass:
    """One walk over the input that puts every request without a record or a batch into batch files."""

    number: int
    start: list[int]
    position: list[int] | None  # where the walk stopped (None: at the end of the input)
    done: bool = False


class Journal:
    """The journal of one run directory: its state when opened, and an fsync'd append for every new step."""

    def __init__(self, run_dir: Path, *, read_only: bool = False) -> None:
        self.dir = Path(run_dir) / BATCH_DIR
        self.path = self.dir / JOURNAL_NAME
        self.run_id: str | None = None
        self.config: dict[str, Any] | None = None
        self.files: dict[str, BatchFile] = {}
        self.passes: list[PlanPass] = []
        self.torn_bytes = 0
        self._fd = -1
        if read_only:  # a look from another process: a torn last line is skipped, not repaired
            self._load(skip_torn=True)
            return
        created = not self.path.exists()
        self.dir.mkdir(parents=True, exist_ok=True)
        if not created:
            self.torn_bytes = repair_torn_tail(self.path)
            self._load()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if created:
            _fsync_dir(self.dir)
            _fsync_dir(self.dir.parent)
        if self.run_id is None:
            self.append({"event": "run", "run_id": uuid.uuid4().hex})

    @staticmethod
    def exists(run_dir: Path) -> bool:
        return (Path(run_dir) / BATCH_DIR / JOURNAL_NAME).exists()

    def _load(self, *, skip_torn: bool = False) -> None:
        with self.path.open("rb") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip() or (skip_torn and not line.endswith(b"\n")):
                    continue
                try:
                    event = orjson.loads(line)
                    self._apply(event)
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                    raise UserError(
                        f"{self.path}:{number}: not a journal entry ({exc}); the file was changed by hand or "
                        "damaged: restore it from a backup, or move the run directory's batches/ folder away "
                        "only after cancelling its batches at the provider"
                    ) from None

    def append(self, event: dict[str, Any]) -> None:
        """Write ``event`` (a timestamp is added) and force it to disk before returning."""
        event = {**event, "at": round(time.time(), 3)}
        write_all(self._fd, orjson.dumps(event) + b"\n")
        os.fsync(self._fd)
        self._apply(event)

    def _apply(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        if kind == "run":
            self.run_id = event["run_id"]
            return
        if kind == "config":
            self.config = event["config"]
            return
        if kind == "pass":
            self.passes.append(PlanPass(event["pass"], event["start"], event["start"]))
            return
        if kind == "pass_done":
            plan_pass = self.passes[-1]
            plan_pass.done, plan_pass.position = True, None
            return
        if kind == "planned":
            entry = BatchFile(
                name=event["file"],
                requests=event["requests"],
                bytes=event["bytes"],
                prompt_tokens=event["prompt_tokens"],
                completion_tokens=event["completion_tokens"],
                plan_pass=event.get("pass", 0),
                end=event.get("end"),
                parent=event.get("parent"),
                depth=event.get("depth", 0),
            )
            self.files[entry.name] = entry
            if entry.parent is None and self.passes:
                self.passes[-1].position = entry.end
            return
        entry = self.files[event["file"]]
        if kind == "uploading":
            entry.uploading_at = event["at"]
        elif kind == "uploaded":
            entry.file_id = event["file_id"]
        elif kind == "creating":
            entry.creating_at = event["at"]
        elif kind == "created":
            entry.batch_id = event["batch_id"]
            entry.status = event.get("status") or entry.status
        elif kind == "status":
            entry.status = event["status"]
            entry.request_counts = event.get("request_counts") or entry.request_counts
        elif kind == "ended":
            entry.ended = True
            entry.status = event["status"]
            entry.request_counts = event.get("request_counts") or entry.request_counts
            entry.output_file_id = event.get("output_file_id")
            entry.error_file_id = event.get("error_file_id")
            entry.usage = event.get("usage")
            entry.turnaround_s = event.get("turnaround_s")
            entry.error = event.get("error")
        elif kind == "collected":
            entry.collected = True
            entry.records = event["records"]
            entry.leftover = event["leftover"]
        elif kind == "settled":
            entry.settled = event["how"]
        elif kind == "cancel":
            entry.cancel_requested = True
        else:
            raise ValueError(f"unknown event {kind!r}")

    # -- queries ----------------------------------------------------------------------------------------

    @property
    def current_pass(self) -> PlanPass | None:
        return self.passes[-1] if self.passes else None

    def next_file_name(self) -> str:
        return f"batch-{len(self.files) + 1:05d}"

    def child_of(self, name: str) -> BatchFile | None:
        return next((entry for entry in self.files.values() if entry.parent == name), None)

    def unsettled(self) -> list[BatchFile]:
        return [entry for entry in self.files.values() if entry.settled is None]

    def open_batches(self) -> list[BatchFile]:
        return [entry for entry in self.files.values() if entry.open]

    def metadata(self, entry: BatchFile) -> dict[str, str]:
        """What names a batch at the provider: this run and this file (how a crashed run finds its batches)."""
        return {"distill_run": str(self.run_id), "distill_file": entry.name}

    def upload_name(self, entry: BatchFile) -> str:
        """The uploaded file's name at the provider, unique to this run and file."""
        return f"distill-{self.run_id}-{entry.name}.jsonl"

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def refuse_open_batches(run_dir: Path) -> None:
    """An online run must not send a request that waits in a batch: refuse while batch files are unsettled."""
    if not Journal.exists(run_dir):
        return
    journal = Journal(run_dir)
    try:
        unsettled = journal.unsettled()
    finally:
        journal.close()
    if unsettled:
        raise UserError(
            f"{run_dir}: {len(unsettled)} batch file(s) of this run are not collected yet: run it with --mode batch "
            "to collect them (or `distill batches cancel` first); sending their requests online would pay twice"
        )
