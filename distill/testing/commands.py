"""`distill serve-fake-teacher` and `distill serve-reference-teacher`: local test servers, not teachers."""

from __future__ import annotations

import argparse

from distill.options import Command
from distill.testing import fake_teacher, reference_teacher
from distill.testing.fake_teacher import FakeTeacherSettings
from distill.testing.reference_teacher import ReferenceTeacherSettings


class ServeFakeTeacherCommand(Command):
    name = "serve-fake-teacher"
    help = "local OpenAI-compatible test/benchmark server (not a teacher)"
    description = fake_teacher.DESCRIPTION
    epilog = "example: distill serve-fake-teacher --port 8000 --latency-ms 50 --rpm 600 --error-500-rate 0.05"
    config = FakeTeacherSettings

    def run(self, config: FakeTeacherSettings, args: argparse.Namespace) -> int:
        fake_teacher.serve(config)
        return 0


class ServeReferenceTeacherCommand(Command):
    name = "serve-reference-teacher"
    help = (
        "local OpenAI-compatible reference teacher (and field-agreement judge) for the bundled contract task"
    )
    description = reference_teacher.DESCRIPTION
    epilog = "example: distill serve-reference-teacher --truth runs/demo/data/truth.jsonl --port 0"
    config = ReferenceTeacherSettings

    def run(self, config: ReferenceTeacherSettings, args: argparse.Namespace) -> int:
        reference_teacher.serve(config)
        return 0


COMMANDS = (ServeFakeTeacherCommand(), ServeReferenceTeacherCommand())
