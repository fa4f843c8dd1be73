"""Batch input files: split within the request and byte limits, custom_id = ledger key, resumable planning."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from distill.engine.batch.journal import Journal
from distill.engine.batch.plan import (
    RowTracker,
    custom_id_of,
    index_path,
    input_path,
    plan_requests,
    plan_resend,
    read_index,
)
from distill.engine.batch.progress import batch_figures, render_lines
from distill.engine.client import request_body
from distill.engine.config import GenerateConfig
from distill.engine.cost import CostMeter
from distill.engine.jobs import make_jobs
from distill.engine.ledger import Ledger
from distill.engine.prompts import load_template
from distill.engine.records import record_key

from distill.errors import UserError


def _input(tmp_path: Path, rows: int, text: str = "合同内容") -> Path:
    path = tmp_path / "in.jsonl"
    with path.open("w") as handle:
        for index in range(rows):
            handle.write(
                json.dumps({"id": f"r{index}", "input": f"{text} {index}"}, ensure_ascii=False) + "\n"
            )
    return path


def _plan(
    tmp_path: Path, rows: int, *, samples: int = 1, max_requests: int = 1000, max_bytes: int = 10**9, **extra
):
    config = GenerateConfig(
        input=_input(tmp_path, rows, **extra),
        output_dir=tmp_path / "run",
        teacher={"base_url": "http://127.0.0.1:9/v1", "model": "m", "api_key_env": None},
        samples_per_input=samples,
    )
    journal = Journal(config.output_dir)
    journal.append({"event": "pass", "pass": 1, "start": [0, 1]})
    tracker = RowTracker((0, 1))
    jobs = make_jobs(config, load_template("zh"), done=set(), position=tracker)
    planned = plan_requests(
        journal,
        jobs,
        tracker,
        request_body=lambda job: request_body(job.request),
        max_requests=max_requests,
        max_bytes=max_bytes,
        input_name=str(config.input),
    )
    return journal, planned


def test_files_stay_within_the_request_limit_and_keep_a_rows_samples_together(tmp_path: Path) -> None:
    journal, planned = _plan(tmp_path, 100, samples=3, max_requests=40)
    assert [entry.requests for entry in planned] == [39] * 7 + [27]  # 13 rows of 3 fit in 40
    seen = set()
    for entry in planned:
        lines = input_path(journal, entry.name).read_bytes().splitlines()
        index = read_index(index_path(journal, entry.name))
        assert len(lines) == entry.requests == len(index)
        rows = {place.row_id for place in index.values()}
        assert all(sum(place.row_id == row for place in index.values()) == 3 for row in rows)
        for line in lines:
            item = json.loads(line)
            place = index[item["custom_id"]]
            assert item["custom_id"] == f"{record_key(place.row_id, place.sample_index):016x}"
            assert item["method"] == "POST" and item["url"] == "/v1/chat/completions"
            assert (
                item["body"]["temperature"] == place.temperature == (0.3 if place.sample_index == 0 else 0.8)
            )
            seen.add(item["custom_id"])
    assert len(seen) == 300
    assert journal.current_pass.done
    assert [entry.end for entry in planned][-1] is None and planned[0].end == [planned[0].end[0], 14]


def test_files_stay_within_the_byte_limit(tmp_path: Path) -> None:
    journal, planned = _plan(tmp_path, 60, max_bytes=20_000)
    assert len(planned) > 1
    for entry in planned:
        size = input_path(journal, entry.name).stat().st_size
        assert size == entry.bytes <= 20_000
    assert sum(entry.requests for entry in planned) == 60


def test_a_row_too_big_for_one_file_is_refused_naming_its_line(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"in.jsonl:1: input: .* batch.max_bytes_per_file"):
        _plan(tmp_path, 3, max_bytes=5000, text="长" * 3000)


def test_planning_resumes_where_the_journal_says(tmp_path: Path) -> None:
    journal, planned = _plan(tmp_path, 50, max_requests=20)
    assert [entry.requests for entry in planned] == [20, 20, 10]
    # A crash right after the second file: the journal ends there, a half-written third file lies around.
    lines = journal.path.read_bytes().splitlines(keepends=True)
    cut = [i for i, line in enumerate(lines) if b'"planned"' in line][1]
    journal.close()
    journal.path.write_bytes(b"".join(lines[: cut + 1]))
    (journal.dir / "batch-00003.jsonl.tmp").write_bytes(b"half")
    again = Journal(tmp_path / "run")
    assert not again.current_pass.done and list(again.files) == ["batch-00001", "batch-00002"]
    position = tuple(again.current_pass.position)
    config = GenerateConfig(
        input=tmp_path / "in.jsonl",
        output_dir=tmp_path / "run",
        teacher={"base_url": "http://127.0.0.1:9/v1", "model": "m", "api_key_env": None},
    )
    tracker = RowTracker(position)
    jobs = make_jobs(config, load_template("zh"), done=set(), position=tracker, derive_ids=False)
    rest = plan_requests(
        again,
        jobs,
        tracker,
        request_body=lambda job: request_body(job.request),
        max_requests=20,
        max_bytes=10**9,
        input_name="in.jsonl",
    )
    assert [entry.requests for entry in rest] == [10] and not list(again.dir.glob("*.tmp"))
    ids = set()
    for name in again.files:
        ids |= set(read_index(index_path(again, name)))
    assert ids == {custom_id_of(f"r{i}", 0) for i in range(50)}


def test_a_resend_copies_only_the_unanswered_lines(tmp_path: Path) -> None:
    journal, planned = _plan(tmp_path, 30)
    parent = planned[0]
    index = read_index(index_path(journal, parent.name))
    unanswered = {int(custom_id, 16) for custom_id in list(index)[::3]}
    child = plan_resend(journal, parent, unanswered)
    assert child.parent == parent.name and child.depth == 1 and child.requests == 10
    lines = input_path(journal, child.name).read_bytes().splitlines()
    assert {int(json.loads(line)["custom_id"], 16) for line in lines} == unanswered
    originals = set(input_path(journal, parent.name).read_bytes().splitlines())
    assert set(lines) <= originals


def test_progress_shows_files_per_state_with_request_counts_and_an_eta(tmp_path: Path) -> None:
    journal, planned = _plan(tmp_path, 90, max_requests=30)
    first, second, third = planned
    for entry, status, done in (
        (first, "in_progress", 10),
        (second, "in_progress", 5),
        (third, "validating", 0),
    ):
        journal.append({"event": "uploading", "file": entry.name})
        journal.append({"event": "uploaded", "file": entry.name, "file_id": f"f-{entry.name}"})
        journal.append({"event": "creating", "file": entry.name})
        journal.append(
            {"event": "created", "file": entry.name, "batch_id": f"b-{entry.name}", "status": status}
        )
        journal.append(
            {"event": "status", "file": entry.name, "status": status, "request_counts": {"completed": done}}
        )
    ledger = Ledger(tmp_path / "run")
    started = (time.monotonic() - 10.0, 0)  # 15 requests finished in 10 s: 75 left take 50 s
    figures = batch_figures(journal, ledger, 90, started)
    assert figures["files"] == {"validating": 1, "in_progress": 2}
    assert figures["finished"]["in_progress"] == 15 and figures["requests"]["in_progress"] == 60
    assert 45 < figures["eta_s"] < 55
    lines = render_lines(figures, CostMeter(None))
    assert lines[0] == "batches: validating 1 (0/30 requests), in_progress 2 (15/60 requests)"
    assert lines[1].startswith("records 0/90 (0.0%)  ETA 0m5") and lines[1].endswith("unpriced")
