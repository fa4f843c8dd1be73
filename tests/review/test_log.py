"""The append-only log: durable appends, one writer, a torn tail set aside, bad lines named by file and line."""

from __future__ import annotations

import os

import pytest

from distill.errors import UserError
from distill.review.log import AppendLog, read_entries


def test_entries_read_back_in_order_with_their_end_offsets(tmp_path):
    path = tmp_path / "review" / "log.jsonl"
    with AppendLog(path, what="decisions") as log:
        first = log.append({"n": 1})
        second = log.append({"n": 2, "text": "甲方 <script>"})
    entries = list(read_entries(path))
    assert [entry for _, entry in entries] == [{"n": 1}, {"n": 2, "text": "甲方 <script>"}]
    assert [offset for offset, _ in entries] == [first, second] == [first, path.stat().st_size]
    assert [entry["n"] for _, entry in read_entries(path, first)] == [2]


def test_a_second_writer_is_refused_while_the_first_holds_the_log(tmp_path):
    path = tmp_path / "log.jsonl"
    with AppendLog(path, what="review decisions"):
        with pytest.raises(UserError, match="another process is writing review decisions"):
            AppendLog(path, what="review decisions")
    AppendLog(path, what="review decisions").close()  # free again once the first is closed


def test_a_torn_last_line_is_skipped_by_readers_and_set_aside_by_the_writer(tmp_path):
    path = tmp_path / "log.jsonl"
    with AppendLog(path, what="decisions") as log:
        log.append({"n": 1})
    with path.open("ab") as handle:
        handle.write(b'{"n": 2, "never ackno')  # what kill -9 in the middle of a write could leave
    assert [entry for _, entry in read_entries(path)] == [{"n": 1}]
    with AppendLog(path, what="decisions") as log:
        assert log.torn_bytes > 0
        log.append({"n": 3})
    assert [entry for _, entry in read_entries(path)] == [{"n": 1}, {"n": 3}]
    assert b"never ackno" in (tmp_path / "log.jsonl.torn").read_bytes()


def test_a_damaged_line_is_an_error_naming_file_and_line(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_bytes(b'{"n": 1}\nnot json\n')
    with pytest.raises(UserError, match=r"log\.jsonl:2: not a valid log entry"):
        list(read_entries(path))


def test_appends_reach_the_file_before_append_returns(tmp_path):
    path = tmp_path / "log.jsonl"
    log = AppendLog(path, what="decisions")
    log.append({"n": 1})
    # Another descriptor sees it at once: nothing waits in a user-space buffer for a kill -9 to lose.
    fd = os.open(path, os.O_RDONLY)
    try:
        assert os.read(fd, 100) == b'{"n":1}\n'
    finally:
        os.close(fd)
        log.close()
