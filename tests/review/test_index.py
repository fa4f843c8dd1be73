"""The SQLite index over the shards: filters, search (Chinese included), incremental refresh, rebuilds."""

from __future__ import annotations

import time

import orjson
import pytest

from distill.errors import UserError
from distill.review.decisions import APPROVE, REJECT, decisions_path, make_entry
from distill.review.index import RunIndex
from distill.review.log import AppendLog
from distill.review.query import ListQuery, QueryError, Search, list_page, progress

from .helpers import contract_answer, failure, record, small_run, write_shard


@pytest.fixture
def index(tmp_path):
    small_run(tmp_path)
    opened = RunIndex(tmp_path)
    opened.refresh()
    yield opened
    opened.close()


def _ids(index, **params):
    page = list_page(index, ListQuery.parse({k: str(v) for k, v in params.items()}), Search(index))
    return [(row["id"], row["sample_index"]) for row in page["rows"]], page["total"]


def test_every_record_is_listed_with_status_reason_and_length(index):
    rows, total = _ids(index)
    assert total == 14
    assert _ids(index, status="rejected") == ([("c99", 0)], 1)
    assert _ids(index, status="failed") == ([("c98", 0)], 1)
    assert _ids(index, reason="too_short")[1] == 1
    assert _ids(index, min_len=1, max_len=10) == ([("c99", 0)], 1)


def test_agreement_of_samples_and_its_sort(index, tmp_path):
    write_shard(
        tmp_path,
        "accepted",
        [
            record("c7", 0, contract_answer("甲", "乙", "1")),
            record("c7", 1, contract_answer("丙", "丁", "2")),
        ],
        index=1,
    )
    index.refresh()
    rows, _ = _ids(index, status="accepted", sort="agreement", limit=2)
    assert set(rows) == {("c7", 0), ("c7", 1)}  # they share no field: agreement 0, sorted first
    page = list_page(index, ListQuery.parse({"status": "accepted", "max_agreement": "0.1"}), Search(index))
    assert page["total"] == 2 and page["rows"][0]["agreement"] == 0.0


@pytest.mark.parametrize(
    "text, expected",
    [
        ("违约", 0),  # two characters: a scan
        ("云帆贸易", 13),  # four characters: the trigram index (every input names it)
        ("杭州青松软件有限公司", 6),  # only the answers of sample 1
        ("c3:", 2),  # both samples' input carries "合同c3:"
        ("太短", 1),  # a rejected record's answer
        ("IMPOSSIBLE", 0),
    ],
)
def test_search_finds_substrings_of_input_and_answer(index, text, expected):
    assert _ids(index, q=text)[1] == expected


def test_the_background_indexer_fills_the_trigram_index_and_searches_agree_before_and_after(tmp_path):
    small_run(tmp_path)
    write_shard(
        tmp_path, "accepted", [record("e1", 0, "The Party A is ACME Trading, 100% paid, 50_000.")], index=1
    )
    index = RunIndex(tmp_path)
    try:
        index.refresh()  # rows, but no trigram index yet: every search scans
        assert index.fts_upto == 0
        texts = ("acme trading", "ACME", "100%", "50_0", "Ac", "杭州青松软件有限公司")
        scanned = [_ids(index, q=text) for text in texts]
        assert scanned[0] == ([("e1", 0)], 1) and scanned[-1][1] == 6
        index.start()
        assert index.wait_until_current(30)
        assert index.fts_upto == 15
        assert [_ids(index, q=text) for text in texts] == scanned
        # A record written while the page is open shows up within the indexer's poll.
        write_shard(tmp_path, "accepted", [record("e2", 0, "ACME Trading again, and nothing else.")], index=1)
        time.sleep(0.1)
        assert index.wait_until_current(30)
        assert _ids(index, q="acme trading")[1] == 2
    finally:
        index.close()


def test_new_lines_are_read_incrementally_and_a_line_being_written_waits(index, tmp_path):
    line = orjson.dumps(record("c50", 0, contract_answer("甲", "乙", "half done"))) + b"\n"
    shard = tmp_path / "accepted-00000.jsonl"
    with shard.open("ab") as handle:
        handle.write(line[:40])  # the engine is in the middle of writing it
    stats = index.refresh()
    assert stats.new_records == 0 and not stats.rebuilt
    with shard.open("ab") as handle:
        handle.write(line[40:])
    stats = index.refresh()
    assert stats.new_records == 1 and not stats.rebuilt
    assert _ids(index, q="half done") == ([("c50", 0)], 1)


def test_a_damaged_line_is_named_by_file_and_line(index, tmp_path):
    with (tmp_path / "accepted-00000.jsonl").open("ab") as handle:
        handle.write(b'{"id": "c51", "sample_index": 0}\n')
    with pytest.raises(UserError, match=r"accepted-00000\.jsonl:13: instruction"):
        index.refresh()


def test_a_shard_moved_away_means_a_rebuild(index, tmp_path):
    # `distill generate --retry-failed` moves failure records aside: the index must not keep them.
    (tmp_path / "failed-00000.jsonl").rename(tmp_path / "failed-moved.jsonl.bak")
    write_shard(tmp_path, "failed", [failure("c97", 0)], index=1)
    assert index.refresh().rebuilt
    assert _ids(index, status="failed") == ([("c97", 0)], 1)


def test_decisions_are_replayed_after_a_restart_and_apply_to_records_indexed_later(tmp_path):
    small_run(tmp_path)
    with AppendLog(decisions_path(tmp_path), what="decisions") as log:
        log.append(make_entry("c0", 0, APPROVE, reviewer="ana"))
        log.append(make_entry("c1", 1, REJECT, reviewer="ana", reason="wrong"))
        log.append(make_entry("c60", 0, APPROVE, reviewer="ana"))  # its record is not written yet
    index = RunIndex(tmp_path)
    try:
        index.refresh()
        assert _ids(index, decision="approved") == ([("c0", 0)], 1)
        assert _ids(index, decision="rejected") == ([("c1", 1)], 1)
        write_shard(tmp_path, "accepted", [record("c60", 0, contract_answer("甲", "乙", "5"))], index=1)
        index.refresh()
        assert _ids(index, decision="approved")[1] == 2
        counts = progress(index)["counts"]
        assert (counts["approved"], counts["rejected"], counts["unreviewed"]) == (2, 1, 10)
    finally:
        index.close()
    for name in ("index.sqlite3", "search.sqlite3"):  # a deleted cache is rebuilt with the same answers
        (tmp_path / "review" / name).unlink()
    index = RunIndex(tmp_path)
    try:
        index.refresh()
        assert _ids(index, decision="approved")[1] == 2
    finally:
        index.close()


def test_bad_list_parameters_are_named():
    with pytest.raises(QueryError, match="status"):
        ListQuery.parse({"status": "maybe"})
    with pytest.raises(QueryError, match="min_len"):
        ListQuery.parse({"min_len": "ten"})
    with pytest.raises(QueryError, match="sort"):
        ListQuery.parse({"sort": "rowid; DROP TABLE rec"})
