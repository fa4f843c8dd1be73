"""kill -9 at random instants of submission and collection: every input ends with exactly one record, and the
provider ran every request exactly once (no batch created twice), over a 20,000-request run in several batches.

The fake teacher is its own process (it outlives every kill, as a provider does); each `distill generate`
is a real process killed with SIGKILL. The fake provider holds every batch until the test releases it, so the
run advances by the test's steps, not by the clock: on a machine of any speed it cannot finish before the
test has made its kills. Kills are aimed: right after the journal shows an upload or a create was decided
(the instants a careless client pays twice; every files/batches call takes BATCH_CALL_MS, longer than the
delay before the kill), while a batch the test just released is being collected, or at a random instant.
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
from distill.engine.batch.journal import BATCH_DIR, JOURNAL_NAME, Journal
from distill.engine.shards import list_shards

ROWS = 10_000
SAMPLES = 2
REQUESTS_PER_FILE = 3000  # 7 batch files
EXPIRING = 3  # the first batches the provider runs expire half done: each one's rest is submitted again
MIN_KILLS = 10
MIN_PER_PHASE = 2
MAX_ATTEMPTS = 24
BATCH_CALL_MS = 100
# The opening submits the 7 files; each later round releases one held batch, kills while it is collected,
# then while its unanswered half is uploaded and created again, then at a random instant.
OPENING = ("uploading", "creating")
ROUND = ("ended", "uploading", "creating", "random")
# The journal lines that show a step is under way: a restart that finds an earlier upload or create at the
# provider writes only the second.
STEP_EVENTS = {
    "uploading": {"uploading", "uploaded"},
    "creating": {"creating", "created"},
    "ended": {"ended"},
}
KILL_WITHIN_S = {"uploading": 0.08, "creating": 0.08, "ended": 0.6}  # after the step shows up
RANDOM_KILL_S = (0.5, 2.5)  # after the process starts
STEP_TIMEOUT_S = 60.0  # a step that never shows up: the kill lands anyway, and the phase counts tell


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


def _wait_for_step(journal: Path, process: subprocess.Popen, events: set[str]) -> None:
    """Until a journal line written from now on is one of ``events`` (or the process ends, or a minute passes).
    Only the bytes appended since the last look are read: the watch must not slow the process it watches."""
    offset = journal.stat().st_size if journal.exists() else 0
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.005)
        if not journal.exists():
            continue
        with journal.open("rb") as handle:
            handle.seek(offset)
            appended = handle.read()
        complete = appended[: appended.rfind(b"\n") + 1]
        offset += len(complete)
        for line in complete.splitlines():
            if json.loads(line)["event"] in events:
                return


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


def _submission_ahead(run_dir: Path) -> bool:
    """Whether a restart has a file to upload and create: one not submitted yet, or the unanswered rest of an
    expired batch that is not settled."""
    if not Journal.exists(run_dir):
        return True
    journal = Journal(run_dir, read_only=True)
    return any(
        entry.batch_id is None or (entry.status == "expired" and entry.settled is None)
        for entry in journal.files.values()
    )


def _release(base_url: str, count: str) -> None:
    """Let the fake provider run the next ``count`` held batches (or ``all``)."""
    request = urllib.request.Request(
        base_url + f"/control/batches/release?count={count}", data=b"", method="POST"
    )
    urllib.request.urlopen(request, timeout=30).close()


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
        "batch_hold": True,
        "batch_ms_per_request": 0.2,
        "batch_api_latency_ms": BATCH_CALL_MS,
        "batch_expire_first": EXPIRING,
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
                        "max_requests_per_file": REQUESTS_PER_FILE,
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
        phases: Counter[str] = Counter()
        for attempt in range(MAX_ATTEMPTS):
            if len(kills) >= MIN_KILLS and min(phases["submission"], phases["collection"]) >= MIN_PER_PHASE:
                break
            aim = OPENING[attempt] if attempt < len(OPENING) else ROUND[(attempt - len(OPENING)) % len(ROUND)]
            if aim in ("uploading", "creating") and not _submission_ahead(run_dir):
                aim = "random"  # nothing left to submit: waiting for the step would only time out
            if aim == "ended":
                _release(teacher.base_url, "1")
            stderr = tmp_path / f"attempt-{attempt}.stderr"
            with stderr.open("wb") as sink:
                process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=sink)
            if aim == "random":
                deadline = time.monotonic() + rng.uniform(*RANDOM_KILL_S)
                while time.monotonic() < deadline and process.poll() is None:
                    time.sleep(0.005)
            else:
                _wait_for_step(journal, process, STEP_EVENTS[aim])
                time.sleep(rng.uniform(0.0, KILL_WITHIN_S[aim]))
            # Batches the test has not released are still held: a run that ends here has failed.
            assert process.poll() is None, stderr.read_text(errors="replace")[-2000:]
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            kills.append((aim, _phase_at_kill(_events(journal))))
            phases[kills[-1][1]] += 1
        _release(teacher.base_url, "all")
        final = subprocess.run(command, capture_output=True, text=True, timeout=600)
        assert final.returncode == 0, final.stderr[-2000:]
        summary = json.loads(final.stdout)
        stats = teacher.stats()
        with urllib.request.urlopen(teacher.base_url + "/stats/batches", timeout=30) as response:
            batches = json.loads(response.read())

    assert len(kills) >= MIN_KILLS, kills
    assert phases["submission"] >= MIN_PER_PHASE and phases["collection"] >= MIN_PER_PHASE, kills
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
