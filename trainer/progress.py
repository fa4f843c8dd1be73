"""Training progress on rank 0: a live bar (step, loss, tokens/s, ETA) and a JSONL log of every step."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class TrainProgress:
    def __init__(
        self,
        total_steps: int,
        done: int,
        log_path: Path | None,
        *,
        enabled: bool,
        stream: IO[str] | None = None,
    ) -> None:
        self.enabled = enabled
        self.log = log_path.open("a", encoding="utf-8") if (enabled and log_path) else None
        self.bar: Progress | None = None
        self.started = time.perf_counter()
        if enabled:
            console = Console(file=stream or sys.stderr)
            self.bar = Progress(
                TextColumn("[bold]train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}  {task.fields[rate]} tok/s  lr {task.fields[lr]}"),
                TimeRemainingColumn(),
                console=console,
                transient=False,
            )
            self.task = self.bar.add_task(
                "train", total=total_steps, completed=done, loss="-", rate="-", lr="-"
            )
            self.bar.start()

    def step(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if self.log:
            self.log.write(json.dumps(record) + "\n")
            self.log.flush()
        self.bar.update(
            self.task,
            completed=record["step"],
            loss=f"{record['loss']:.4f}",
            rate=f"{record['tokens_per_second']:.0f}",
            lr=f"{record['lr']:.2e}",
        )

    def note(self, message: str) -> None:
        if self.enabled:
            self.bar.console.print(message)
            if self.log:
                self.log.write(json.dumps({"note": message}) + "\n")

    def close(self) -> None:
        if self.bar:
            self.bar.stop()
        if self.log:
            self.log.close()
            self.log = None
