"""RecordWriter: what one result becomes on disk, and that a failed write stops all later ones."""

from __future__ import annotations

import asyncio
import json
import os

import pytest
from distill.engine.config import FilterConfig
from distill.engine.cost import CostMeter
from distill.engine.filters import QualityFilter
from distill.engine.ledger import Ledger
from distill.engine.resume import ResumePosition
from distill.engine.shards import DiskFullError, ShardSet
from distill.engine.types import CallFailure, ChatRequest, ChatResponse, Job, Usage
from distill.engine.writer import RecordWriter, RunStats

from distill.endpoint import Price

ANSWER = "【思考过程】\n核对甲乙方与金额\n【最终答案】\n甲方为A公司,乙方为B公司,金额一万元,签订日期为二〇二四年一月一日,各项要素已逐一核对无误,可直接用于合同管理系统的归档。"


def make_writer(tmp_path, budget=None):
    ledger = Ledger(tmp_path)
    position = ResumePosition(ledger)
    for i in range(5):
        position.issue(f"r{i}", i * 10, i + 1, 1)
    price = Price(input_per_million=1e6, output_per_million=1e6)
    return RecordWriter(
        shards=ShardSet(tmp_path, 1 << 20),
        ledger=ledger,
        quality=QualityFilter(FilterConfig()),
        cost=CostMeter(price, budget),
        stats=RunStats(5, 0),
        position=position,
        source_model="m",
        reject_truncated=True,
        stop=asyncio.Event(),
    )


def job(i):
    return Job(
        (f"r{i}", 0),
        ChatRequest([{"role": "user", "content": "p"}], "m", 0.3, 64, f"r{i}#0"),
        10,
        {"instruction": "抽取合同要素\n\n合同"},
    )


def test_accepted_truncated_failed(tmp_path):
    writer = make_writer(tmp_path)
    writer(job(0), ChatResponse(ANSWER, "stop", Usage(3, 4), 12.345, None))
    writer(job(1), ChatResponse(ANSWER + "再补充", "length", Usage(3, 64), 5.0, "m-2024"))
    writer(job(2), CallFailure("server_error", "HTTP 500", 500, 6, True))
    accepted = json.loads((tmp_path / "accepted-00000.jsonl").read_text())
    assert (
        accepted["source_model"] == "m"
        and accepted["latency_ms"] == 12.3
        and accepted["usage"]["prompt_tokens"] == 3
    )
    rejected = json.loads((tmp_path / "rejected-00000.jsonl").read_text())
    assert rejected["reject_reason"] == "truncated" and rejected["source_model"] == "m-2024"
    failed = json.loads((tmp_path / "failed-00000.jsonl").read_text())
    assert (failed["error_class"], failed["status"], failed["attempts"]) == ("server_error", 500, 6)
    assert writer.stats.accepted == 1 and dict(writer.stats.failed) == {"server_error": 1}
    assert writer.ledger.finished == 3 and writer.cost.prompt_tokens == 6


def test_budget_sets_the_stop_event(tmp_path):
    writer = make_writer(tmp_path, budget=10)
    writer(job(0), ChatResponse(ANSWER, "stop", Usage(3, 4), 1.0, None))
    assert not writer.stop.is_set()
    writer(job(1), ChatResponse(ANSWER + "!", "stop", Usage(3, 4), 1.0, None))
    assert writer.stop.is_set() and writer.budget_reached


def test_a_failed_ledger_write_blocks_further_records(tmp_path):
    writer = make_writer(tmp_path)
    os.close(writer.ledger._fd)
    writer.ledger._fd = os.open("/dev/full", os.O_WRONLY)
    with pytest.raises(DiskFullError):
        writer(job(0), ChatResponse(ANSWER, "stop", Usage(3, 4), 1.0, None))
    with pytest.raises(DiskFullError):
        writer(job(1), CallFailure("timeout", "slow", None, 1, True))
    # The first record reached its shard (reconcile restores its entry); the second was never written.
    assert len((tmp_path / "accepted-00000.jsonl").read_text().splitlines()) == 1
    assert not (tmp_path / "failed-00000.jsonl").exists()
