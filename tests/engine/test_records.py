"""The record contract: what the writer writes fits the models, the docs' table is the models', and the one
reader validates every line, naming file:line when one does not fit."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from distill.engine.config import FilterConfig
from distill.engine.cost import CostMeter
from distill.engine.filters import QualityFilter
from distill.engine.ledger import Ledger
from distill.engine.records import (
    AcceptedRecord,
    FailureRecord,
    RecordReader,
    RejectedRecord,
    field_table,
    iter_records,
    read_last_record,
    record_key,
)
from distill.engine.resume import ResumePosition
from distill.engine.shards import ShardSet
from distill.engine.types import CallFailure, ChatRequest, ChatResponse, Job, Usage
from distill.engine.writer import RecordWriter, RunStats

from distill.errors import UserError

ANSWER = (
    "【思考过程】\n核对甲乙方与金额\n【最终答案】\n"
    + "甲方为A公司,乙方为B公司,金额一万元,签订日期为二〇二四年一月一日。" * 2
)
DOCS = Path(__file__).resolve().parents[2] / "docs" / "engine.md"


def _write_one_of_each(run_dir: Path) -> None:
    ledger = Ledger(run_dir)
    position = ResumePosition(ledger)
    writer = RecordWriter(
        shards=ShardSet(run_dir, 1 << 20),
        ledger=ledger,
        quality=QualityFilter(FilterConfig()),
        cost=CostMeter(None),
        stats=RunStats(3, 0),
        position=position,
        source_model="m",
        reject_truncated=True,
        stop=asyncio.Event(),
    )
    request = ChatRequest([{"role": "user", "content": "p"}], "m", 0.3, 64, "x")
    job = Job(("r0", 0), request, 10, {"instruction": "抽取合同要素\n\n合同"})
    writer(job, ChatResponse(ANSWER, "stop", Usage(3, 4), 12.0, None))
    writer(
        Job(("r1", 0), request, 10, job.meta), ChatResponse("no markers here", "stop", Usage(3, 4), 5.0, "m")
    )
    writer(Job(("r2", 0), request, 10, job.meta), CallFailure("server_error", "HTTP 500", 500, 6, True))
    writer.shards.close()
    ledger.close()


def test_what_the_writer_writes_is_exactly_the_contract(tmp_path):
    _write_one_of_each(tmp_path)
    records = {record.kind: record for record in iter_records(tmp_path)}
    assert isinstance(records["accepted"], AcceptedRecord) and records["accepted"].output.startswith("甲方")
    assert isinstance(records["rejected"], RejectedRecord) and records["rejected"].reject_reason == "format"
    assert records["rejected"].response == "no markers here"
    assert isinstance(records["failed"], FailureRecord) and records["failed"].status == 500
    assert records["accepted"].key == record_key("r0", 0)
    assert records["accepted"].where == f"{tmp_path / 'accepted-00000.jsonl'}:1"
    # No field is written that the contract does not declare (it would be dropped by every reader).
    for kind, model in (
        ("accepted", AcceptedRecord),
        ("rejected", RejectedRecord),
        ("failed", FailureRecord),
    ):
        line = json.loads((tmp_path / f"{kind}-00000.jsonl").read_text())
        assert set(line) <= set(model.model_fields), (kind, set(line) - set(model.model_fields))
        required = {name for name, info in model.model_fields.items() if info.is_required()}
        assert required <= set(line)


def test_the_docs_field_table_is_generated_from_the_models():
    assert field_table() in DOCS.read_text(encoding="utf-8"), (
        "docs/engine.md's record table differs from engine.records: paste field_table()'s output there"
    )


def test_a_damaged_record_is_named_by_file_line_and_field(tmp_path):
    _write_one_of_each(tmp_path)
    shard = tmp_path / "accepted-00000.jsonl"
    good = shard.read_text()
    shard.write_text(good + good.replace('"sample_index":0', '"sample_index":"zero"'))
    with pytest.raises(
        UserError, match=rf"{shard}:2: sample_index: .*integer.*\n.*damaged: restore the shard"
    ):
        list(iter_records(tmp_path, kinds=("accepted",)))
    shard.write_text("[1, 2]\n")
    with pytest.raises(UserError, match=rf"{shard}:1: \(top level\)"):
        list(iter_records(tmp_path, kinds=("accepted",)))
    shard.write_text(good.replace('"output":"', '"output":null,"x":"'))
    with pytest.raises(UserError, match=rf"{shard}:last line: output"):
        read_last_record(shard)


def test_a_torn_last_line_is_skipped_and_counted(tmp_path):
    _write_one_of_each(tmp_path)
    shard = tmp_path / "accepted-00000.jsonl"
    shard.write_text(shard.read_text() + '{"id": "half a rec')
    reader = RecordReader(tmp_path, kinds=("accepted", "failed"))
    assert [record.kind for record in reader] == ["accepted", "failed"]
    assert reader.torn_lines == 1


def test_unknown_fields_from_a_newer_writer_are_ignored(tmp_path):
    _write_one_of_each(tmp_path)
    shard = tmp_path / "failed-00000.jsonl"
    shard.write_text(shard.read_text().replace('{"id"', '{"added_later":1,"id"'))
    assert [record.id for record in iter_records(tmp_path, kinds=("failed",))] == ["r2"]
