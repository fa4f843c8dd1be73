"""What every stage of `distill run` gets, and the one small interface each stage module has.

A stage is a module with ``NAME``, ``check(context)`` (refuse bad input before any stage runs or any server
starts), ``key(context) -> str`` (a hash of everything that decides its output: its
own settings and the keys of the stages it reads, so a change upstream reruns everything downstream) and
``run(context) -> (outputs, details)`` (outputs: name → path; details: JSON for the report). ``run.py`` orders
them; a stage reads earlier stages' results from ``context.records`` only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from distill.pipeline.config import LoadedRunConfig, RunConfig
from distill.pipeline.markers import StageRecord
from distill.pipeline.services import Services
from distill.pipeline.task import TaskView


@dataclass
class StageContext:
    loaded: LoadedRunConfig
    run_dir: Path
    services: Services
    task: TaskView
    records: dict[str, StageRecord] = field(default_factory=dict)

    @property
    def config(self) -> RunConfig:
        return self.loaded.config

    def key(self, name: str) -> str:
        return self.records[name].key


class Stage(Protocol):
    NAME: str

    def check(self, context: StageContext) -> None: ...

    def key(self, context: StageContext) -> str: ...

    def run(self, context: StageContext) -> tuple[dict[str, Any], dict[str, Any]]: ...
