"""kill -9 at random instants of submission and collection: every input ends with exactly one record, and the
provider ran every request exactly once (no batch created twice), over a 20,000-request run in several batches.

The fake teacher is its own process (it outlives every kill, as a provider does); each `distill generate`
is a real process killed with SIGKILL. Kills are aimed: right after the journal shows an upload or a create
was decided (the instants a careless client pays twice), while results are being collected, or at a random
instant; each aim adds a random delay so the kill lands before, during or after the step.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
import yaml
from distill.engine.batch.journal import BATCH_DIR, JOURNAL_NAME
from distill.engine.shards import list_shards

ROWS = 10_000
SAMPLES = 2
MIN_KILLS = 10
AIMS = ("uploading", "creating", "ended", "random")
PHASE_OF = {"uploading": "submission", "creating": "submission", "ended": "collection"}


def _events(journal: Path) -> list[dict]:
    if not journal.exists():
        return []
    events = []
    for line in journal.read_bytes().splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            pass  # a line torn by the kill
    return events


def _phase_at_kill(events: list[dict]) -> str:
    """What the killed process was doing, judged from the journal it left."""
    pending_create = {e["file"] for e in events if e["event"] == "creating"} - {
        e["file"] for e in events if e["event"] == "created"
    }
    pending_upload = {e["file"] for e in events if e["event"] == "uploading"} - {
        e["file"] for e in events if e["event"] == "uploaded"
    }
    collecting = {e["file"] for e in events if e["event"] == "ended"} - {
        e["file"] for e in events if e["event"] == "collected"
    }
    if pending_create or pending_upload:
        return "submission"
    if collecting:
        return "collection"
    return "other"


@pytest.mark.slow
def test_kill_9_at_random_instants_never_pays_twice(fake_teacher, tmp_path: Path) -> None:
    rng = random.Random(20261130)
    source = tmp_path / "in.jsonl"
    with source.open("w") as handle:
        for index in range(ROWS):
            handle.write(
                json.dumps({"id": f"row-{index}", "input": f"合同 {index}: 甲方 A 乙方 B 金额 {index}"})
                + "\n"
            )
    settings = {
        "batch_ms_per_request": 1.5,
        "batch_api_latency_ms": 60,
        "batch_expire_first": 2,
        "batch_torn_download_rate": 0.2,
        "batch_error_rate": 0.01,
    }
    with fake_teacher(**settings) as teacher:
        config = tmp_path / "generate.yaml"
        run_dir = tmp_path / "run"
        config.write_text(
            yaml.safe_dump(
                {
                    "input": str(source),
                    "output_dir": str(run_dir),
                    "teacher": {
                        "base_url": teacher.base_url + "/v1",
                        "model": "fake-teacher",
                        "api_key_env": None,
                    },
                    "samples_per_input": SAMPLES,
                    "mode": "batch",
                    "batch": {
                        "max_requests_per_file": 3000,
                        "poll_initial_s": 0.05,
                        "poll_max_s": 0.3,
                        "reconcile_grace_s": 1.0,
                        "download_attempts": 20,
                    },
                }
            )
        )
        command = [sys.executable, "-m", "distill", "generate", "--config", str(config), "--no-progress"]
        journal = run_dir / BATCH_DIR / JOURNAL_NAME
        kills: list[tuple[str, str]] = []  # (aim, phase the journal shows at the kill)
        finished = None
        for attempt in range(60):
            if len(kills) >= MIN_KILLS + 2:
                break
            aim = AIMS[attempt % len(AIMS)]
            seen = len(_events(journal))
            process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + (rng.uniform(1.0, 4.0) if aim == "random" else 8.0)
            while time.monotonic() < deadline and process.poll() is None:
                if aim != "random" and any(e["event"] == aim for e in _events(journal)[seen:]):
                    break
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.12 if aim in ("uploading", "creating") else 0.6))
            if process.poll() is not None:
                finished = process.returncode
                break
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            kills.append((aim, _phase_at_kill(_events(journal))))
        assert finished is None, f"the run finished after only {len(kills)} kills: make it longer"
        final = subprocess.run(command, capture_output=True, text=True, timeout=600)
        assert final.returncode == 0, final.stderr[-2000:]
        summary = json.loads(final.stdout)
        stats = teacher.stats()
        with urllib.request.urlopen(teacher.base_url + "/stats/batches", timeout=30) as response:
            batches = json.loads(response.read())

    assert len(kills) >= MIN_KILLS
    phases = Counter(phase for _, phase in kills)
    assert phases["submission"] >= 2 and phases["collection"] >= 2, kills
    # Every input ends with exactly one record per sample.
    keys: Counter[tuple[str, int]] = Counter()
    for path in list_shards(run_dir):
        for line in path.read_bytes().splitlines():
            record = json.loads(line)
            keys[(record["id"], record["sample_index"])] += 1
    assert len(keys) == ROWS * SAMPLES and set(keys.values()) == {1}
    assert summary["status"] == "complete" and summary["done"] == ROWS * SAMPLES
    # The provider ran each request exactly once, and no file got two batches.
    assert batches["unique_requests_executed"] == ROWS * SAMPLES
    assert batches["duplicate_executions"] == 0 and batches["requests_executed"] == ROWS * SAMPLES
    per_file = Counter(batch["metadata"]["distill_file"] for batch in batches["batches"])
    assert set(per_file.values()) == {1}, per_file
    assert stats["total"] == 0  # nothing went online
    print(
        f"kills: {len(kills)} by phase {dict(phases)}; batches {len(per_file)}; {batches['torn_downloads']} torn"
    )
