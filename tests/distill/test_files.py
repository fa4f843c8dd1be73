"""Files written whole: the new content replaces the old only when all of it is on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from distill.errors import UserError
from distill.files import read_jsonl, replacing, replacing_directory, write_atomically, write_jsonl


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path):
    path = write_atomically(tmp_path / "state.json", '{"step": 1}')
    with pytest.raises(RuntimeError), replacing(path) as handle:
        handle.write(b'{"st')
        raise RuntimeError("killed half way")
    assert path.read_text(encoding="utf-8") == '{"step": 1}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_text_is_utf8_and_jsonl_is_one_unescaped_object_a_line(tmp_path: Path):
    write_atomically(tmp_path / "a.txt", "甲方")
    assert (tmp_path / "a.txt").read_bytes() == "甲方".encode()
    write_jsonl(tmp_path / "rows.jsonl", ({"id": n, "input": "合同"} for n in range(2)))
    assert (tmp_path / "rows.jsonl").read_text(encoding="utf-8") == (
        '{"id": 0, "input": "合同"}\n{"id": 1, "input": "合同"}\n'
    )


def test_read_jsonl_skips_blank_lines_and_names_the_line_it_cannot_use(tmp_path: Path):
    path = tmp_path / "answers.jsonl"
    path.write_text('{"input": "甲"}\n\n{"input": "乙"}\n', encoding="utf-8")
    assert read_jsonl(path, lambda row: row["input"], "an input row") == ["甲", "乙"]
    path.write_text('{"input": "甲"}\n{"text": "乙"}\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"answers\.jsonl:2: not an input row: 'input'"):
        read_jsonl(path, lambda row: row["input"], "an input row")
    path.write_text('{"input": "甲"}\n{"input": \n', encoding="utf-8")
    with pytest.raises(UserError, match=r"answers\.jsonl:2: not an input row: Expecting value"):
        read_jsonl(path, lambda row: row["input"], "an input row")


def test_a_directory_appears_whole_or_not_at_all(tmp_path: Path):
    target = tmp_path / "merged"
    with pytest.raises(RuntimeError), replacing_directory(target) as staging:
        staging.mkdir()
        (staging / "config.json").write_text("{}")
        raise RuntimeError("killed before the weights")
    assert list(tmp_path.iterdir()) == []
    with replacing_directory(target) as staging:
        staging.mkdir()
        (staging / "config.json").write_text("{}")
    assert [p.name for p in tmp_path.iterdir()] == ["merged"] and (target / "config.json").is_file()
