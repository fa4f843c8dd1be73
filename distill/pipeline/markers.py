"""Stage completion markers: what lets an interrupted `distill run` resume instead of starting over.

A stage's *key* is a hash of everything that decides its output: its own settings and the keys of the
stages it reads from, so changing the data invalidates generation, training and evaluation after it. When a
stage finishes, ``stages/<name>.json`` records its key, its outputs and how long it took. Next time, the stage
is skipped if the marker's key matches and its outputs are still there; otherwise the marker is removed
*before* the stage runs again, so a stage killed half-way never looks complete.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distill.engine.manifest import utc_now
from distill.files import write_atomically


def stage_key(*parts: Any) -> str:
    """A stable hash of JSON-able parts (dict key order does not matter)."""
    text = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


@dataclass
class StageRecord:
    name: str
    key: str
    outputs: dict[str, str]
    seconds: float
    details: dict[str, Any] = field(default_factory=dict)
    finished_at: str = ""
    skipped: bool = False  # True when this invocation reused it

    def path(self, name: str) -> Path:
        return Path(self.outputs[name])


class StageBook:
    """Reads and writes the markers of one run directory."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir / "stages"

    def _marker(self, name: str) -> Path:
        return self.dir / f"{name}.json"

    def completed(self, name: str, key: str) -> StageRecord | None:
        """The stage's record if it finished with this key and its outputs still exist."""
        try:
            data = json.loads(self._marker(name).read_text(encoding="utf-8"))
            record = StageRecord(**data)
        except (FileNotFoundError, json.JSONDecodeError, TypeError):
            return None
        if record.key != key or not all(Path(path).exists() for path in record.outputs.values()):
            return None
        record.skipped = True
        return record

    def start(self, name: str) -> float:
        """Forget any earlier completion of ``name``; returns the start time for `finish`."""
        self._marker(name).unlink(missing_ok=True)
        return time.monotonic()

    def finish(
        self,
        name: str,
        key: str,
        started: float,
        outputs: dict[str, Any],
        details: dict[str, Any] | None = None,
    ) -> StageRecord:
        record = StageRecord(
            name=name,
            key=key,
            outputs={label: str(path) for label, path in outputs.items()},
            seconds=round(time.monotonic() - started, 2),
            details=details or {},
            finished_at=utc_now(),
        )
        self.dir.mkdir(parents=True, exist_ok=True)
        data = {k: v for k, v in record.__dict__.items() if k != "skipped"}
        write_atomically(self._marker(name), json.dumps(data, indent=2, ensure_ascii=False))
        return record


def claim_output_dir(out: Path, key: str) -> None:
    """Make ``out`` the working directory of the stage attempt with ``key``.

    Partial work in ``out`` (engine shards, training checkpoints) is kept for resuming only if it was started
    under the same key; work left by another config is removed first, so nothing from it leaks in.
    """
    # Beside ``out``, not in it: the engine and the trainer accept only an empty directory or one of their own.
    marker = out.with_name(f".{out.name}.stage-key")
    previous = marker.read_text().strip() if marker.is_file() else None
    if previous != key and out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(key + "\n")
