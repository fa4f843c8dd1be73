"""Jobs from rows: temperatures, request ids, skipping finished keys; and the resume watermark."""

from __future__ import annotations

import json

from distill.engine.config import GenerateConfig
from distill.engine.jobs import make_jobs
from distill.engine.ledger import Ledger
from distill.engine.prompts import load_template
from distill.engine.records import record_key
from distill.engine.resume import ResumePosition


def config_for(tmp_path, **overrides) -> GenerateConfig:
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"id": f"r{i}", "input": f"text {i} {{x}}"}) + "\n" for i in range(3)))
    return GenerateConfig(
        input=path,
        output_dir=tmp_path / "run",
        teacher={"base_url": "http://127.0.0.1:1", "model": "m"},
        task="T",
        **overrides,
    )


def test_one_job_per_row_and_sample(tmp_path):
    config = config_for(tmp_path, samples_per_input=3, send_seed=True, max_tokens=100)
    jobs = list(make_jobs(config, load_template("en"), done=set(), position=ResumePosition(Ledger(tmp_path))))
    assert [job.key for job in jobs[:4]] == [("r0", 0), ("r0", 1), ("r0", 2), ("r1", 0)]
    assert [job.request.temperature for job in jobs[:3]] == [0.3, 0.8, 0.8]
    assert jobs[1].request.request_id == "r0#1" and jobs[1].request.extra_body == {"seed": 1}
    assert "Input:\ntext 0 {x}" in jobs[0].request.messages[0]["content"]
    assert jobs[0].meta["instruction"] == "T\n\ntext 0 {x}"
    assert jobs[0].reserved_tokens > 100  # prompt estimate + max_tokens


def test_finished_keys_are_skipped(tmp_path):
    config = config_for(tmp_path, samples_per_input=2)
    done = {record_key("r0", 0), record_key("r0", 1), record_key("r1", 1)}
    jobs = list(make_jobs(config, load_template("zh"), done=done, position=ResumePosition(Ledger(tmp_path))))
    assert [job.key for job in jobs] == [("r1", 0), ("r2", 0), ("r2", 1)]
    assert jobs[0].request.extra_body is None


def test_watermark_is_the_first_row_with_work_left(tmp_path):
    watermark = ResumePosition(Ledger(tmp_path))
    watermark.reading(0, 1)
    watermark.issue("a", 0, 1, 2)
    watermark.reading(10, 2)
    watermark.issue("b", 10, 2, 1)
    watermark.reading(20, 3)  # row c needed nothing
    assert watermark.position() == (0, 1)
    watermark.finished("b")
    assert watermark.position() == (0, 1)  # a still has a sample out
    watermark.finished("a")
    assert watermark.position() == (0, 1)
    watermark.finished("a")
    assert watermark.position() == (20, 3)  # a and b done: everything before row c is finished


def test_the_position_is_stored_every_few_hundred_results_and_read_back(tmp_path):
    ledger = Ledger(tmp_path)
    position = ResumePosition(ledger)
    for row in range(600):
        position.reading(row * 10, row + 1)
        position.issue(f"r{row}", row * 10, row + 1, 1)
    for row in range(600):
        position.finished(f"r{row}")  # the 512th stores (5120, 513)
    ledger.close()
    again = Ledger(tmp_path)
    assert ResumePosition(again).start == (5120, 513)
    assert ResumePosition(again, discard=True).start == (0, 1)
    again.close()
    assert ResumePosition(Ledger(tmp_path)).start == (0, 1)  # a discard is stored too
