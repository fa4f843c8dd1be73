"""Decisions: later wins, clear, the export filter with edits in place, the state fingerprint."""

from __future__ import annotations

import pytest

from distill.errors import UserError
from distill.review.decisions import (
    APPROVE,
    CLEAR,
    REJECT,
    apply_review,
    decisions_path,
    finish_entry,
    load_state,
    make_entry,
    state_fingerprint,
)
from distill.review.log import AppendLog

from .helpers import contract_answer, record


def _log(run_dir, *entries):
    with AppendLog(decisions_path(run_dir), what="decisions") as log:
        for entry in entries:
            log.append(entry)


def _records():
    return [record(f"c{n}", 0, contract_answer("甲", "乙", f"{n}万元")) for n in range(4)]


def test_the_later_decision_wins_and_clear_returns_to_unreviewed(tmp_path):
    _log(
        tmp_path,
        make_entry("c0", 0, APPROVE, reviewer="ana"),
        make_entry("c0", 0, REJECT, reviewer="bo", reason="wrong amount"),
        make_entry("c1", 0, REJECT, reviewer="ana"),
        make_entry("c1", 0, CLEAR, reviewer="ana"),
        finish_entry("ana"),
    )
    state = load_state(tmp_path)
    assert state.latest[("c0", 0)].decision == REJECT
    assert state.latest[("c0", 0)].reason == "wrong amount"
    assert state.latest[("c0", 0)].reviewer == "bo"
    assert ("c1", 0) not in state.latest
    assert state.finished_at is not None
    assert state.entries == 5


def test_export_filter_approved_keeps_only_approvals_with_edits_in_place(tmp_path):
    edited = contract_answer("甲", "乙", "99万元")
    _log(
        tmp_path,
        make_entry("c0", 0, APPROVE, reviewer="ana"),
        make_entry("c1", 0, APPROVE, reviewer="ana", edit=("重新核对了金额。", edited)),
        make_entry("c2", 0, REJECT, reviewer="ana"),
    )
    kept = list(apply_review(tmp_path, _records(), "approved"))
    assert [r["id"] for r in kept] == ["c0", "c1"]
    assert kept[1]["output"] == edited
    assert kept[1]["thinking"] == "重新核对了金额。"
    assert kept[1]["full_output"] == f"【思考】重新核对了金额。\n\n【答案】{edited}"
    assert kept[0]["output"] == _records()[0]["output"]


def test_export_filter_exclude_rejected_keeps_the_unreviewed(tmp_path):
    _log(tmp_path, make_entry("c2", 0, REJECT, reviewer="ana"), make_entry("c3", 0, APPROVE, reviewer="ana"))
    kept = list(apply_review(tmp_path, _records(), "exclude-rejected"))
    assert [r["id"] for r in kept] == ["c0", "c1", "c3"]


def test_unknown_export_mode_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="--review: unknown mode 'all'"):
        list(apply_review(tmp_path, _records(), "all"))


def test_fingerprint_follows_the_latest_decisions_not_the_log_length(tmp_path):
    empty = state_fingerprint(tmp_path)
    _log(tmp_path, make_entry("c0", 0, APPROVE, reviewer="ana"))
    approved = state_fingerprint(tmp_path)
    assert approved != empty
    _log(tmp_path, make_entry("c0", 0, APPROVE, reviewer="bo"))  # same state, longer log
    assert state_fingerprint(tmp_path) == approved
    _log(tmp_path, make_entry("c0", 0, CLEAR, reviewer="bo"))
    assert state_fingerprint(tmp_path) == empty


def test_only_an_approval_carries_an_edit():
    with pytest.raises(ValueError, match="only an approval"):
        make_entry("c0", 0, REJECT, reviewer="ana", edit=("", "x"))
