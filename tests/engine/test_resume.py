"""Exactly-once resume: the ledger on its own, then `distill generate` killed with SIGKILL again and again."""

from __future__ import annotations

import json
import os
import random
import signal
import struct
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from distill.engine.ledger import ENTRY, LEDGER_NAME, Ledger, reason_code, row_hash
from distill.engine.records import record_key
from distill.engine.resume import check_shards, move_failures_aside, reconcile
from distill.engine.shards import list_shards

from distill.errors import UserError
from tests.engine.run_dirs import accepted, lines


def test_ledger_round_trip(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.add(
        record_key("a", 0),
        "accepted",
        answer_hash=0xABC,
        row=row_hash("a"),
        prompt_tokens=10,
        completion_tokens=20,
    )
    ledger.add(record_key("a", 1), "rejected", reason="too_short", prompt_tokens=5, completion_tokens=6)
    ledger.mark_watermark(123, 4)
    ledger.add(record_key("b", 0), "failed")
    ledger.close()
    again = Ledger(tmp_path)
    assert again.done == {record_key("a", 0), record_key("a", 1), record_key("b", 0)}
    assert again.accepted_answers == {0xABC: row_hash("a")}
    assert (again.count("accepted"), again.count("rejected"), again.count("failed"), again.finished) == (
        1,
        1,
        1,
        3,
    )
    assert again.rejected_by_reason(["too_short", "format"]) == {"too_short": 1, "format": 0}
    assert (again.prompt_tokens, again.completion_tokens) == (15, 26)
    assert again.watermark == (123, 4)
    again.close()


def test_a_new_filter_does_not_change_the_ledger_format(tmp_path):
    """Reasons are stored by a hash of their name: a reason no code knows yet is counted, not an error."""
    ledger = Ledger(tmp_path)
    ledger.add(record_key("a", 0), "rejected", reason="schema")
    ledger.add(record_key("b", 0), "rejected", reason="a_filter_from_the_future")
    ledger.close()
    again = Ledger(tmp_path)
    counts = again.rejected_by_reason(["schema"])
    assert counts["schema"] == 1 and counts[f"unknown (0x{reason_code('a_filter_from_the_future'):04x})"] == 1
    again.close()


def test_a_ledger_of_the_earlier_letter_format_still_loads_and_resumes(tmp_path):
    legacy = struct.Struct("<QQIIB7x")
    (tmp_path / LEDGER_NAME).write_bytes(
        legacy.pack(record_key("a", 0), 0xABC, 10, 20, ord("a"))
        + legacy.pack(record_key("b", 0), 0, 5, 6, ord("d"))
        + legacy.pack(record_key("c", 0), 0, 0, 0, ord("f"))
        + legacy.pack(640, 0, 7, 0, ord("@"))
    )
    ledger = Ledger(tmp_path)
    assert ledger.done == {record_key("a", 0), record_key("b", 0), record_key("c", 0)}
    assert ledger.rejected_by_reason(["duplicate"]) == {"duplicate": 1}
    assert ledger.watermark == (640, 7) and (ledger.prompt_tokens, ledger.completion_tokens) == (15, 26)
    assert ledger.accepted_answers == {0xABC: 0}  # row unknown: dedupes against every row, as before
    ledger.add(record_key("d", 0), "accepted", answer_hash=1, row=row_hash("d"))  # new entries append
    ledger.close()
    assert Ledger(tmp_path).count("accepted") == 2


def test_no_token_count_a_server_sends_can_make_the_ledger_unwritable(tmp_path):
    ledger = Ledger(tmp_path)
    for bad in (-5, 1 << 70, 2**32, "12", None, 3.7):
        ledger.add(record_key(str(bad), 0), "accepted", prompt_tokens=bad, completion_tokens=bad)
    ledger.close()
    again = Ledger(tmp_path)
    assert again.finished == 6
    assert again.prompt_tokens == 0 + 0xFFFFFFFF * 2 + 12 + 0 + 3
    again.close()


def test_garbage_appended_to_the_ledger_is_named_with_what_to_do(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.add(record_key("a", 0), "failed")
    ledger.close()
    with open(tmp_path / LEDGER_NAME, "ab") as handle:
        handle.write(b"this is not a ledger entry at all" * 4)  # 132 bytes: 4 whole entries + a torn one
    with pytest.raises(UserError, match=r"done\.keys: entry 2 .* damaged: move it aside .* rebuilds it"):
        Ledger(tmp_path)


def test_torn_ledger_entry_is_cut(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.add(record_key("a", 0), "failed")
    ledger.close()
    with open(tmp_path / LEDGER_NAME, "ab") as handle:
        handle.write(b"\x01\x02\x03")
    again = Ledger(tmp_path)
    assert again.torn_bytes == 3 and again.finished == 1
    assert (tmp_path / LEDGER_NAME).stat().st_size == ENTRY.size
    assert (tmp_path / f"{LEDGER_NAME}.torn").read_bytes() == b"\x01\x02\x03"
    again.close()


def _record(row_id, sample=0, **fields):
    return lines(accepted(row_id, sample, **fields))


FAILURE = {"error_class": "timeout", "message": "slow", "status": None, "attempts": 1, "failed_at": "x"}


def test_reconcile_restores_the_entry_of_a_records_last_line(tmp_path):
    (tmp_path / "accepted-00000.jsonl").write_text(_record("x", 1))
    (tmp_path / "failed-00000.jsonl").write_text(json.dumps({"id": "y", "sample_index": 0, **FAILURE}) + "\n")
    ledger = Ledger(tmp_path)
    assert reconcile(ledger, list_shards(tmp_path)) == 2
    assert reconcile(ledger, list_shards(tmp_path)) == 0
    assert ledger.done == {record_key("x", 1), record_key("y", 0)}
    assert (ledger.count("accepted"), ledger.count("failed"), ledger.prompt_tokens) == (1, 1, 3)
    ledger.close()


def test_a_deleted_shard_is_found_and_its_records_regenerated(tmp_path):
    (tmp_path / "accepted-00000.jsonl").write_text(_record("a") + _record("b"))
    (tmp_path / "accepted-00001.jsonl").write_text(_record("c"))
    ledger = Ledger(tmp_path)
    for row in "abc":
        ledger.add(record_key(row, 0), "accepted", answer_hash=1, row=row_hash(row), prompt_tokens=3)
    ledger, check = check_shards(tmp_path, ledger)
    assert not check.rebuilt  # counts agree: nothing read but newlines
    ledger.close()
    (tmp_path / "accepted-00001.jsonl").unlink()
    (tmp_path / "accepted-00000.jsonl").write_text(_record("a"))  # truncated to its first line
    ledger, check = check_shards(tmp_path, Ledger(tmp_path))
    assert (
        check.rebuilt
        and check.entries_without_record == 2
        and "2 finished record(s) are missing" in check.describe()
    )
    assert ledger.done == {record_key("a", 0)}  # b and c are sent again
    assert ledger.prompt_tokens == 9  # ... and what they cost still counts against the budget
    ledger.close()
    assert Ledger(tmp_path).finished == 1


def test_retry_failed_moves_failures_aside_and_forgets_their_keys(tmp_path):
    (tmp_path / "failed-00000.jsonl").write_text('{"id": "y", "sample_index": 0}\n')
    ledger = Ledger(tmp_path)
    ledger.add(record_key("x", 0), "accepted", answer_hash=7, row=1)
    ledger.add(record_key("y", 0), "failed")
    ledger.mark_watermark(99, 3)
    ledger.close()
    assert move_failures_aside(tmp_path) == 1
    assert not list(tmp_path.glob("failed-*.jsonl"))
    assert (tmp_path / "failed-retried" / "failed-00000.jsonl").exists()
    after = Ledger(tmp_path)
    assert after.done == {record_key("x", 0)} and after.watermark == (0, 1)
    after.close()


# -- kill -9 -------------------------------------------------------------------------------------------------

ROWS, SAMPLES, CONCURRENCY = 300, 2, 16


def _records(run_dir: Path) -> Counter:
    keys: Counter = Counter()
    for path in list_shards(run_dir):
        for line in path.read_bytes().splitlines():
            record = json.loads(line)  # every line whole: torn tails were repaired
            keys[(record["id"], record["sample_index"])] += 1
    return keys


def _ledger_entries(run_dir: Path) -> int:
    data = (run_dir / LEDGER_NAME).read_bytes()
    return sum(1 for at in range(0, len(data), ENTRY.size) if data[at + 24] not in b"@L")


def test_exactly_once_under_repeated_kill_9(tmp_path, fake_teacher):
    inputs = tmp_path / "in.jsonl"
    inputs.write_text(
        "".join(
            json.dumps(
                {"id": f"c{i}", "input": f"合同{i}:甲方A公司,乙方B公司,金额{i}元。"}, ensure_ascii=False
            )
            + "\n"
            for i in range(ROWS)
        ),
        encoding="utf-8",
    )
    run_dir = tmp_path / "run"
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    with fake_teacher(latency_distribution="uniform", latency_ms=35, latency_spread_ms=15) as teacher:
        command = [
            sys.executable,
            "-m",
            "distill",
            "generate",
            "--input",
            str(inputs),
            "--output-dir",
            str(run_dir),
            "--base-url",
            teacher.base_url + "/v1",
            "--model",
            "fake-teacher",
            "--task",
            "抽取合同要素",
            "--samples-per-input",
            str(SAMPLES),
            "--concurrency",
            str(CONCURRENCY),
            "--no-progress",
        ]
        kills = 0
        for attempt in range(12):
            process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            ledger = run_dir / LEDGER_NAME
            before = ledger.stat().st_size if ledger.exists() else 0
            deadline = time.monotonic() + 60
            # Kill only once it is visibly sending and writing, at a random moment after that.
            while process.poll() is None and time.monotonic() < deadline:
                if ledger.exists() and ledger.stat().st_size > before:
                    break
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.25))
            if process.poll() is None and attempt < 11:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
                kills += 1
                continue
            _, stderr = process.communicate(timeout=120)
            assert process.returncode == 0, stderr.decode()
            break
        stats = teacher.stats()
    keys = _records(run_dir)
    expected = {(f"c{i}", s) for i in range(ROWS) for s in range(SAMPLES)}
    assert set(keys) == expected, f"seed {seed}"
    assert max(keys.values()) == 1, f"seed {seed}: {[k for k, n in keys.items() if n > 1][:5]}"
    assert _ledger_entries(run_dir) == len(expected)
    assert kills >= 3, f"seed {seed}: only {kills} kills landed mid-run"
    # Only what was in flight at a kill was sent twice.
    assert stats["unique_ids"] == len(expected)
    assert stats["duplicate_requests"] <= kills * CONCURRENCY, f"seed {seed}: {stats['duplicate_requests']}"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["done"] == summary["total"] == len(expected)


def test_a_failed_ledger_write_stops_every_later_write(tmp_path):
    from distill.engine.shards import DiskFullError

    ledger = Ledger(tmp_path)
    ledger.add(record_key("a", 0), "accepted", answer_hash=1, row=1)
    os.close(ledger._fd)
    ledger._fd = os.open("/dev/full", os.O_WRONLY)  # the disk fills up under the ledger
    with pytest.raises(DiskFullError):
        ledger.add(record_key("b", 0), "accepted", answer_hash=2, row=1)
    with pytest.raises(DiskFullError):  # refused from now on, even if space came back
        ledger.mark_watermark(10, 2)
    ledger.close()
    assert Ledger(tmp_path).done == {record_key("a", 0)}
