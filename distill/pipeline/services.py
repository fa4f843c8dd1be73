"""The endpoints the stages of `distill run` talk to: the teacher and the judge, started on first use (a local
server for kind reference or vllm, nothing for kind api) and stopped when the run's exit stack closes."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from distill.endpoint import Endpoint
from distill.pipeline.config import RunConfig
from distill.pipeline.console import say
from distill.pipeline.servers import REFERENCE_JUDGE_MODEL, reference_teacher_server, vllm_server
from distill.trainer.student import resolve_student


class Services:
    """The endpoints stages talk to, started on first use and stopped when the run ends."""

    def __init__(self, config: RunConfig, run_dir: Path, stack: contextlib.ExitStack) -> None:
        self.config = config
        self.run_dir = run_dir
        self.stack = stack
        # The data stage's outputs: what the reference teacher may know (truth: contracts; answers: the user's).
        self.known_answers: dict[str, str] | None = None
        self._teacher: Endpoint | None = None
        self._reference: Endpoint | None = None

    def _start(self, what: str, manager: contextlib.AbstractContextManager[Endpoint]) -> Endpoint:
        started = time.monotonic()
        say(f"starting {what} ...")
        endpoint = self.stack.enter_context(manager)
        say(f"{what} ready at {endpoint.base_url} after {time.monotonic() - started:.1f} s")
        return endpoint

    def reference(self) -> Endpoint:
        """The reference teacher process (it also serves the reference judge)."""
        if self._reference is None:
            if self.known_answers is None:
                raise AssertionError("the data stage sets known_answers before any server is needed")
            known = {
                key: Path(path) for key, path in self.known_answers.items() if key in ("truth", "answers")
            }
            teacher = self.config.teacher
            self._reference = self._start(
                "the reference teacher",
                reference_teacher_server(
                    known,
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
            label="reference judge (a rubric, not a model: 10 × the share of fields that match the reference "
            "for a JSON answer, 10 × word-overlap F1 with the reference for text)",
        )
