"""Append-only shards: rotation, torn-line repair, full disk."""

from __future__ import annotations

import os

import pytest
from distill.engine.shards import DiskFullError, ShardSet, last_line, list_shards, repair_torn_tail


def test_rotation_at_the_size_limit(tmp_path):
    shards = ShardSet(tmp_path, max_bytes=4096)
    line = b"x" * 999 + b"\n"
    for _ in range(10):
        shards.write("accepted", line)
    shards.write("failed", b"{}\n")
    shards.close()
    accepted = list_shards(tmp_path, "accepted")
    assert [path.name for path in accepted] == [
        "accepted-00000.jsonl",
        "accepted-00001.jsonl",
        "accepted-00002.jsonl",
    ]
    assert [path.stat().st_size for path in accepted] == [4000, 4000, 2000]
    assert [path.name for path in list_shards(tmp_path)][-1] == "failed-00000.jsonl"
    # Reopening continues the last shard rather than starting over.
    again = ShardSet(tmp_path, max_bytes=4096)
    again.write("accepted", line)
    again.close()
    assert (tmp_path / "accepted-00002.jsonl").stat().st_size == 3000


def test_torn_tail_is_cut_and_kept_aside(tmp_path):
    path = tmp_path / "accepted-00000.jsonl"
    path.write_bytes(b'{"a":1}\n{"a":2}\n{"a":')
    assert repair_torn_tail(path) == len(b'{"a":')
    assert path.read_bytes() == b'{"a":1}\n{"a":2}\n'
    assert (tmp_path / "accepted-00000.jsonl.torn").read_bytes() == b'{"a":\n'
    assert repair_torn_tail(path) == 0
    assert last_line(path) == b'{"a":2}'
    only_torn = tmp_path / "rejected-00000.jsonl"
    only_torn.write_bytes(b"partial")
    ShardSet(tmp_path, 4096).close()  # opening a run repairs every shard
    assert only_torn.read_bytes() == b"" and last_line(only_torn) is None


def test_last_line_of_a_big_record(tmp_path):
    path = tmp_path / "x.jsonl"
    big = b"y" * 200_000
    path.write_bytes(b"first\n" + big + b"\n")
    assert last_line(path) == big


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full to simulate a full disk")
def test_full_disk_breaks_the_set_for_good(tmp_path):
    os.symlink("/dev/full", tmp_path / "accepted-00000.jsonl")
    shards = ShardSet(tmp_path, max_bytes=1 << 20)
    with pytest.raises(DiskFullError):
        shards.write("accepted", b"{}\n")
    # Nothing more is written anywhere once a write failed: a torn line stays the last line.
    with pytest.raises(DiskFullError):
        shards.write("rejected", b"{}\n")
    shards.close()
    assert not (tmp_path / "rejected-00000.jsonl").exists()


def test_a_short_write_is_finished_by_more_writes(tmp_path, monkeypatch):
    """The kernel may write less than asked (a signal, a nearly full disk): the rest follows, in order."""
    real_write = os.write
    calls = []

    def seven_bytes_at_most(fd, data):
        calls.append(len(data))
        return real_write(fd, bytes(data[:7]))

    monkeypatch.setattr(os, "write", seven_bytes_at_most)
    shards = ShardSet(tmp_path, max_bytes=1 << 20)
    line = "合同编号 HT-0000001:甲方,乙方\n".encode()
    shards.write("accepted", line)
    shards.close()
    assert (tmp_path / "accepted-00000.jsonl").read_bytes() == line
    assert len(calls) == -(-len(line) // 7)  # one write per 7 bytes, none wasted
