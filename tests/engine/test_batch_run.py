"""`distill generate --mode batch` end to end against the fake teacher's batch API over real HTTP."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from distill.engine.batch.journal import Journal
from distill.engine.batch.plan import input_path
from distill.engine.config import GenerateConfig
from distill.engine.runner import EXIT_CODES, run_generation
from distill.engine.shards import list_shards
from openai import AsyncOpenAI

from distill.bench.batch import BatchBenchConfig, run_bench
from distill.errors import UserError

FAST = {"poll_initial_s": 0.02, "poll_max_s": 0.1, "reconcile_grace_s": 0.3}


def _stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "/stats/batches", timeout=10) as response:
        return json.loads(response.read())


def _chat_stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "/stats", timeout=10) as response:
        return json.loads(response.read())


def _config(
    tmp_path: Path,
    url: str,
    rows: int = 120,
    *,
    samples: int = 1,
    top: dict[str, Any] | None = None,
    teacher: dict[str, Any] | None = None,
    **batch: Any,
) -> GenerateConfig:
    source = tmp_path / "in.jsonl"
    if not source.exists():
        with source.open("w") as handle:
            for index in range(rows):
                handle.write(json.dumps({"id": f"r{index}", "input": f"合同 {index}: 甲方 A 乙方 B"}) + "\n")
    return GenerateConfig(
        input=source,
        output_dir=tmp_path / "run",
        teacher={"base_url": url + "/v1", "model": "fake-teacher", "api_key_env": None, **(teacher or {})},
        samples_per_input=samples,
        mode="batch",
        batch={**FAST, **batch},
        **(top or {}),
    )


def _records(run_dir: Path) -> Counter[tuple[str, int]]:
    keys: Counter[tuple[str, int]] = Counter()
    for path in list_shards(run_dir):
        for line in path.read_bytes().splitlines():
            record = json.loads(line)
            keys[(record["id"], record["sample_index"])] += 1
    return keys


def test_a_batch_run_writes_one_record_per_request_at_half_the_price(
    fake_teacher_url, tmp_path: Path
) -> None:
    url = fake_teacher_url(batch_ms_per_request=0.2)
    price = {"input_per_million": 2.0, "output_per_million": 8.0}
    config = _config(tmp_path, url, rows=100, samples=2, max_requests_per_file=70, teacher={"price": price})
    summary = run_generation(config, progress=False)
    assert summary["status"] == "complete" and summary["mode"] == "batch"
    assert summary["records"] == {"accepted": 200, "rejected": 0, "failed": 0}
    keys = _records(config.output_dir)
    assert len(keys) == 200 and set(keys.values()) == {1}
    tokens = summary["cost"]["tokens"]["total"]
    assert summary["cost"]["total"] == pytest.approx(
        (tokens["prompt"] * 1.0 + tokens["completion"] * 4.0) / 1e6
    )
    stats = _stats(url)
    assert stats["batches_created"] == 3 and stats["requests_executed"] == 200
    assert stats["duplicate_executions"] == 0
    assert {b["metadata"]["distill_file"] for b in stats["batches"]} == {
        "batch-00001",
        "batch-00002",
        "batch-00003",
    }
    record = json.loads(next(iter(list_shards(config.output_dir, "accepted"))).read_text().splitlines()[0])
    assert (
        record["instruction"].startswith("合同 ")
        and record["output"]
        and record["source_model"] == "fake-teacher"
    )
    # Nothing left behind but the journal; a rerun has nothing to do and creates no batch.
    assert [path.name for path in (config.output_dir / "batches").iterdir()] == ["journal.jsonl"]
    again = run_generation(config, progress=False)
    assert again["status"] == "complete" and _stats(url)["batches_created"] == 3


def test_an_expired_batch_keeps_its_finished_half_and_resends_only_the_rest(
    fake_teacher_url, tmp_path: Path
) -> None:
    url = fake_teacher_url(batch_ms_per_request=0.2, batch_expire_first=1, batch_expire_after=0.5)
    config = _config(tmp_path, url, rows=400)
    summary = run_generation(config, progress=False)
    assert summary["status"] == "complete" and summary["records"]["accepted"] == 400
    assert summary["batches"]["collected_lines"]["not_run"] == 200
    stats = _stats(url)
    first, second = stats["batches"]
    assert first["status"] == "expired" and first["request_counts"]["completed"] == 200
    assert second["status"] == "completed" and second["request_counts"]["total"] == 200  # only the rest
    assert second["metadata"]["distill_file"] == "batch-00002"
    assert stats["requests_executed"] == 400 and stats["duplicate_executions"] == 0
    journal = Journal(config.output_dir, read_only=True)
    assert (
        journal.files["batch-00001"].settled == "resent"
        and journal.files["batch-00002"].parent == "batch-00001"
    )
    assert set(_records(config.output_dir).values()) == {1}


def test_error_lines_become_failure_records_and_retry_failed_resends_them(
    fake_teacher_url, tmp_path: Path
) -> None:
    url = fake_teacher_url(batch_ms_per_request=0.1, batch_error_rate=0.15)
    config = _config(tmp_path, url, rows=200)
    summary = run_generation(config, progress=False)
    failed = summary["records"]["failed"]
    assert summary["status"] == "complete" and 10 <= failed <= 50
    assert summary["records"]["accepted"] + failed == 200
    failure = json.loads(next(iter(list_shards(config.output_dir, "failed"))).read_text().splitlines()[0])
    assert failure["error_class"] == "server_error" and failure["status"] == 500
    assert _stats(url)["requests_executed"] == 200
    retried = run_generation(config, progress=False, retry_failed=True)
    assert retried["status"] == "complete"
    stats = _stats(url)
    assert stats["batches_created"] == 2 and stats["batches"][1]["request_counts"]["total"] == failed
    assert sum(_records(config.output_dir).values()) == 200 and retried["done"] == 200


def test_a_torn_download_is_fetched_again(fake_teacher_url, tmp_path: Path) -> None:
    url = fake_teacher_url(batch_ms_per_request=0.1, batch_torn_download_rate=0.5, seed=3)
    config = _config(tmp_path, url, rows=150, max_requests_per_file=50, download_attempts=12)
    summary = run_generation(config, progress=False)
    assert summary["status"] == "complete" and summary["records"]["accepted"] == 150
    stats = _stats(url)
    assert stats["torn_downloads"] >= 1 and stats["requests_executed"] == 150
    assert set(_records(config.output_dir).values()) == {1}


def test_stop_while_batches_run_then_rerun_to_collect(fake_teacher_url, tmp_path: Path) -> None:
    url = fake_teacher_url(batch_ms_per_request=5)
    config = _config(tmp_path, url, rows=100, max_requests_per_file=50, wait=False)
    summary = run_generation(config, progress=False)
    assert summary["status"] == "batches_open" and EXIT_CODES[summary["status"]] == 6
    assert len(summary["batches"]["open_batch_ids"]) == 2 and summary["done"] == 0
    online = config.model_copy(update={"mode": "online"})
    with pytest.raises(UserError, match="not collected yet"):
        run_generation(online, progress=False)
    waiting = config.model_copy(update={"batch": config.batch.model_copy(update={"wait": True})})
    summary = run_generation(waiting, progress=False)
    assert summary["status"] == "complete" and summary["done"] == 100
    stats = _stats(url)
    assert stats["batches_created"] == 2 and stats["duplicate_executions"] == 0


def test_cancel_records_what_ran_and_the_next_run_sends_the_rest(fake_teacher_url, tmp_path: Path) -> None:
    url = fake_teacher_url(batch_ms_per_request=40)  # 6 s of work: the cancel lands while it runs
    config = _config(tmp_path, url, rows=150, wait=False)
    assert run_generation(config, progress=False)["status"] == "batches_open"
    cancelled = subprocess.run(
        [sys.executable, "-m", "distill", "batches", "cancel", str(config.output_dir), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cancelled.returncode == 0, cancelled.stderr
    summary = json.loads(cancelled.stdout)
    ran = summary["done"]
    assert 0 < ran < 150 and summary["batches"]["collected_lines"]["not_run"] == 150 - ran
    assert _stats(url)["batches"][0]["status"] == "cancelled"
    status = subprocess.run(
        [sys.executable, "-m", "distill", "batches", "status", str(config.output_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(status.stdout)["files"][0]["settled"] == "cancelled"
    waiting = config.model_copy(update={"batch": config.batch.model_copy(update={"wait": True})})
    summary = run_generation(waiting, progress=False)
    assert summary["status"] == "complete" and summary["done"] == 150
    stats = _stats(url)
    assert stats["batches"][1]["request_counts"]["total"] == 150 - ran
    assert stats["requests_executed"] == 150 and stats["duplicate_executions"] == 0


def test_budget_counts_submitted_batches_at_their_estimate(fake_teacher_url, tmp_path: Path) -> None:
    url = fake_teacher_url(batch_ms_per_request=0.1)
    price = {"input_per_million": 10.0, "output_per_million": 10.0}
    # A file's estimate counts max_tokens for every answer (about 0.03 here), its real cost is lower (about
    # 0.02): the first file fits at once, each collection frees the rest of its estimate, the budget ends it.
    top = {"budget": 0.05, "max_tokens": 200}
    config = _config(tmp_path, url, rows=100, max_requests_per_file=25, top=top, teacher={"price": price})
    summary = run_generation(config, progress=False)
    assert summary["status"] == "budget_reached"
    stats = _stats(url)
    assert 1 <= stats["batches_created"] < 4  # one file fits at first; each collection frees its overestimate
    assert summary["cost"]["total"] <= config.budget
    assert summary["done"] == stats["requests_executed"] == 25 * stats["batches_created"]


def test_fallback_online_sends_only_the_unanswered_rest_online(fake_teacher_url, tmp_path: Path) -> None:
    url = fake_teacher_url(batch_ms_per_request=0.1, batch_expire_first=1, latency_ms=1)
    config = _config(tmp_path, url, rows=100, fallback="online")
    summary = run_generation(config, progress=False)
    assert summary["status"] == "complete" and summary["done"] == 100
    assert _stats(url)["requests_executed"] == 50 and _stats(url)["batches_created"] == 1
    chat = _chat_stats(url)
    assert chat["total"] == 50 and chat["duplicate_ids"] == 0
    assert set(_records(config.output_dir).values()) == {1}


def test_a_create_that_landed_before_a_crash_is_found_not_repeated(fake_teacher_url, tmp_path: Path) -> None:
    url = fake_teacher_url(batch_ms_per_request=0.1)
    # Plan and upload only: a budget no batch fits.
    price = {"input_per_million": 1.0, "output_per_million": 1.0}
    config = _config(tmp_path, url, rows=60, top={"budget": 1e-9}, teacher={"price": price})
    assert run_generation(config, progress=False)["status"] == "budget_reached"
    journal = Journal(config.output_dir)
    entry = journal.files["batch-00001"]
    assert entry.file_id is not None and entry.batch_id is None
    # The crash: the intent was written, the create reached the provider, its answer was lost.
    journal.append({"event": "creating", "file": entry.name, "file_id": entry.file_id})

    async def create_like_the_lost_call() -> None:
        client = AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        await client.batches.create(
            input_file_id=str(entry.file_id),
            endpoint="/v1/chat/completions",
            completion_window="24h",
            metadata=journal.metadata(entry),
        )
        await client.close()

    asyncio.run(create_like_the_lost_call())
    journal.close()
    resumed = config.model_copy(update={"budget": None})
    summary = run_generation(resumed, progress=False)
    assert summary["status"] == "complete" and summary["done"] == 60
    stats = _stats(url)
    assert stats["batches_created"] == 1 and stats["files_uploaded"] == 1 and stats["requests_executed"] == 60


def test_an_upload_that_landed_before_a_crash_is_found_not_repeated(fake_teacher_url, tmp_path: Path) -> None:
    url = fake_teacher_url(batch_ms_per_request=0.1)
    price = {"input_per_million": 1.0, "output_per_million": 1.0}
    config = _config(tmp_path, url, rows=40, top={"budget": 1e-9}, teacher={"price": price})
    run_generation(config, progress=False)  # plans and uploads
    stats = _stats(url)
    assert stats["files_uploaded"] == 1
    journal = Journal(config.output_dir)
    entry = journal.files["batch-00001"]
    # Rewrite history: the upload's answer was lost after its intent.
    lines = [
        line for line in journal.path.read_bytes().splitlines(keepends=True) if b'"uploaded"' not in line
    ]
    journal.close()
    journal.path.write_bytes(b"".join(lines))
    assert Journal(config.output_dir, read_only=True).files[entry.name].file_id is None
    summary = run_generation(config.model_copy(update={"budget": None}), progress=False)
    assert summary["status"] == "complete"
    assert _stats(url)["files_uploaded"] == 1 and _stats(url)["batches_created"] == 1


def test_the_command_line_runs_batch_mode_from_a_config(fake_teacher_url, tmp_path: Path) -> None:
    url = fake_teacher_url(batch_ms_per_request=0.1)
    config = _config(tmp_path, url, rows=30)
    path = tmp_path / "generate.yaml"
    data = json.loads(config.model_dump_json())
    data.pop("mode")
    path.write_text(yaml.safe_dump(data))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "distill",
            "generate",
            "--config",
            str(path),
            "--mode",
            "batch",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["mode"] == "batch" and _stats(url)["requests_executed"] == 30
    assert input_path(Journal(config.output_dir, read_only=True), "batch-00001").exists() is False


def test_a_download_that_keeps_failing_stops_that_file_until_a_rerun(
    fake_teacher_url, tmp_path: Path
) -> None:
    url = fake_teacher_url(batch_ms_per_request=0.1, batch_torn_download_rate=1.0)
    config = _config(tmp_path, url, rows=20, download_attempts=2)
    summary = run_generation(config, progress=False)
    assert summary["status"] == "batches_open" and EXIT_CODES[summary["status"]] == 6
    assert "complete message body" in summary["message"] and "rerun" in summary["message"]
    assert summary["done"] == 0 and Journal(config.output_dir, read_only=True).files["batch-00001"].ended
    assert not list((config.output_dir / "batches").glob("*.part"))  # nothing half downloaded is kept


def test_ctrl_c_stops_at_once_and_a_rerun_collects(fake_teacher_url, tmp_path: Path) -> None:
    url = fake_teacher_url(batch_ms_per_request=20)
    config = _config(tmp_path, url, rows=200, max_requests_per_file=100)
    path = tmp_path / "generate.yaml"
    path.write_text(yaml.safe_dump(json.loads(config.model_dump_json())))
    command = [sys.executable, "-m", "distill", "generate", "--config", str(path), "--no-progress"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    journal = config.output_dir / "batches" / "journal.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if journal.exists() and journal.read_bytes().count(b'"created"') == 2:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == EXIT_CODES["interrupted"], err
    summary = json.loads(out)
    assert "keep running" in summary["message"] and summary["done"] < 200
    finished = run_generation(config, progress=False)
    assert finished["status"] == "complete" and finished["done"] == 200
    stats = _stats(url)
    assert stats["batches_created"] == 2 and stats["duplicate_executions"] == 0
    assert set(_records(config.output_dir).values()) == {1}


def test_many_batches_are_tracked_within_the_call_limit(fake_teacher_url, tmp_path: Path) -> None:
    url = fake_teacher_url(batch_ms_per_request=2, batch_api_latency_ms=5)
    config = _config(tmp_path, url, rows=600, max_requests_per_file=4, max_concurrent_calls=3)
    summary = run_generation(config, progress=False)
    assert summary["status"] == "complete" and summary["done"] == 600
    assert summary["batches"]["files_by_stage"] == {"settled": 150}
    stats = _stats(url)
    assert stats["batches_created"] == 150 and stats["duplicate_executions"] == 0
    assert 1 < stats["max_calls_in_flight"] <= 3


def test_a_batch_the_provider_keeps_failing_ends_in_failure_records(fake_teacher_url, tmp_path: Path) -> None:
    url = fake_teacher_url(batch_ms_per_request=0.1, batch_max_requests=3)
    config = _config(tmp_path, url, rows=5, max_requests_per_file=5, max_resends=1)
    summary = run_generation(config, progress=False)
    assert summary["status"] == "complete" and summary["records"] == {
        "accepted": 0,
        "rejected": 0,
        "failed": 5,
    }
    failure = json.loads(next(iter(list_shards(config.output_dir, "failed"))).read_text().splitlines()[0])
    assert "sent again 1 time(s)" in failure["message"] and "too_many_requests" in failure["message"]
    stats = _stats(url)
    assert stats["batches_created"] == 2 and stats["requests_executed"] == 0


def test_the_batch_benchmark_plans_uploads_and_submits_within_the_limits(tmp_path: Path) -> None:
    figures = run_bench(BatchBenchConfig(requests=3000, max_requests_per_file=1000, work_dir=tmp_path))
    assert figures["within_limits"] and figures["files"] == 3 and figures["batches_created"] == 3
    assert figures["requests"] == 3000 and figures["status"] == "batches_open" and figures["exit_status"] == 6
    assert figures["peak_rss_mb"] > 0 and figures["baseline_dry_run_s"] > 0
