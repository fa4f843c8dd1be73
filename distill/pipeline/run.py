"""`distill run CONFIG`: the whole distillation, one stage after another, resumable.

data → generate (engine, resumable by itself) → export → train (trainer) → evaluate (evaluator: base
student, distilled student, teacher) → report. Each stage is skipped when its marker says it finished for
the same inputs (``pipeline.stages``). Servers (reference teacher, vLLM) start only when a stage that needs
them runs, and stop when the run ends, fails or is interrupted (Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import contextlib
import fcntl
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from distill.endpoint import Endpoint
from distill.errors import UserError
from distill.pipeline import steps
from distill.pipeline.config import LoadedRunConfig
from distill.pipeline.servers import reference_teacher_server, vllm_server
from distill.pipeline.stages import StageBook, StageRecord
from distill.testing.reference_teacher import JUDGE_MODEL_NAME as REFERENCE_JUDGE_MODEL


def say(message: str) -> None:
    print(f"distill run: {message}", flush=True)


class Services:
    """The endpoints stages talk to, started on first use and stopped when the run ends."""

    def __init__(self, loaded: LoadedRunConfig, run_dir: Path, stack: contextlib.ExitStack) -> None:
        self.config = loaded.config
        self.run_dir = run_dir
        self.stack = stack
        self.truth_path: Path | None = None
        self._teacher: Endpoint | None = None
        self._reference: Endpoint | None = None

    def _start(self, what: str, manager: contextlib.AbstractContextManager[Endpoint]) -> Endpoint:
        started = time.monotonic()
        say(f"starting {what} ...")
        endpoint = self.stack.enter_context(manager)
        say(f"{what} ready at {endpoint.base_url} after {time.monotonic() - started:.1f} s")
        return endpoint

    def reference(self) -> Endpoint:
        """The reference teacher process (it also serves the field-agreement judge)."""
        if self._reference is None:
            if self.truth_path is None:
                raise AssertionError("the data stage sets truth_path before any server is needed")
            teacher = self.config.teacher
            self._reference = self._start(
                "the reference teacher",
                reference_teacher_server(
                    self.truth_path,
                    self.run_dir / "logs" / "reference-teacher.log",
                    latency_ms=teacher.latency_ms,
                    latency_spread_ms=teacher.latency_spread_ms,
                    stream_ms_per_token=teacher.stream_ms_per_token,
                ),
            )
        return self._reference

    def teacher(self) -> Endpoint:
        if self._teacher is None:
            teacher = self.config.teacher
            if teacher.kind == "reference":
                self._teacher = self.reference()
            elif teacher.kind == "api":
                self._teacher = teacher.endpoint
            else:
                from distill.trainer.student import resolve_student

                model_dir = resolve_student(teacher.model)
                endpoint = self._start(
                    f"vllm serve {teacher.model} as the teacher",
                    vllm_server(
                        model_dir,
                        f"teacher-{Path(str(teacher.model)).name}",
                        self.run_dir / "logs" / "vllm-teacher.log",
                        max_model_len=teacher.max_model_len,
                        timeout_s=teacher.start_timeout_s,
                    ),
                )
                self._teacher = endpoint.model_copy(
                    update={"label": f"{teacher.model} served by vLLM on this machine"}
                )
        return self._teacher

    def judge(self) -> Endpoint:
        judge = self.config.judge
        if judge.kind == "teacher":
            return self.teacher()
        if judge.kind == "api":
            return judge.endpoint
        reference = self.reference()
        # Same process as the reference teacher, but not the teacher grading itself: the judge is a rubric
        # (the process routes by prompt, not by model name), and its own name keeps the report truthful.
        return Endpoint(
            base_url=reference.base_url,
            model=REFERENCE_JUDGE_MODEL,
            api_key_env=None,
            label="reference field-agreement judge (10 × fields matching the reference / 5; a rubric, not a model)",
        )


StageFunction = Callable[[steps.StageContext], tuple[dict, dict]]


def _run_stage(
    book: StageBook, name: str, key: str, force: bool, work: Callable[[], tuple[dict, dict]]
) -> StageRecord:
    if not force:
        done = book.completed(name, key)
        if done is not None:
            say(f"{name}: already complete for this config ({done.seconds:.0f} s when it ran) — skipped")
            return done
    say(f"{name}: running")
    started = book.start(name)
    outputs, details = work()
    record = book.finish(name, key, started, outputs, details)
    say(f"{name}: done in {record.seconds:.1f} s")
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
def _sigterm_as_interrupt() -> Iterator[None]:
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
    with _run_lock(run_dir), _sigterm_as_interrupt(), contextlib.ExitStack() as stack:
        services = Services(loaded, run_dir, stack)
        context = steps.StageContext(loaded=loaded, run_dir=run_dir, services=services, records={})
        context.validate_sections()
        book = StageBook(run_dir)
        for name, key_of, work in steps.STAGES:
            key = key_of(context)
            context.records[name] = _run_stage(book, name, key, force, lambda work=work: work(context))
            if name == "data":
                services.truth_path = context.records[name].path("truth")
    total = time.monotonic() - started
    say(f"finished in {total:.0f} s; report: {run_dir / 'report.md'}")
    sys.stdout.flush()
    return 0
