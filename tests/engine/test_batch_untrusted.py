"""A batch's output file is as untrusted as an online answer: the fake provider writes hostile result lines
(over real HTTP, into real files) and collection must treat each as the online client treats the same answer.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from distill.engine.batch.journal import Journal
from distill.engine.config import GenerateConfig
from distill.engine.runner import run_generation
from distill.engine.shards import list_shards

from distill.testing.fake_teacher import FakeTeacherSettings, start_in_thread

KEY = "sk-batch-0123456789abcdefghijKLMNOPQRSTuvwxyz"
KEY_ENV = "DISTILL_BATCH_UNTRUSTED_TEST_KEY"
ROWS = 12
FAST = {"poll_initial_s": 0.02, "poll_max_s": 0.1, "reconcile_grace_s": 0.3}


@pytest.fixture
def hostile_batches(monkeypatch, tmp_path: Path) -> Iterator[Callable[[str], tuple[dict[str, Any], Path]]]:
    """``run(fault)``: a batch run against a provider whose result lines have ``fault`` for about half the
    requests; returns the summary and the run directory."""
    monkeypatch.setenv(KEY_ENV, KEY)
    stops: list[Callable[[], None]] = []

    def run(fault: str) -> tuple[dict[str, Any], Path]:
        settings = FakeTeacherSettings(
            api_key_env=KEY_ENV,
            batch_ms_per_request=0.1,
            batch_result_fault=fault,
            batch_result_fault_rate=0.5,
        )
        url, stop = start_in_thread(settings)
        stops.append(stop)
        source = tmp_path / "in.jsonl"
        source.write_text(
            "".join(
                json.dumps({"id": f"c{i}", "input": f"合同{i}:甲方A公司,乙方B公司。"}) + "\n"
                for i in range(ROWS)
            )
        )
        config = GenerateConfig(
            input=source,
            output_dir=tmp_path / fault,
            teacher={"base_url": url + "/v1", "model": "fake-teacher", "api_key_env": KEY_ENV},
            max_tokens=256,
            mode="batch",
            batch=FAST,
        )
        return run_generation(config, progress=False), config.output_dir

    yield run
    for stop in stops:
        stop()


def _key_pieces(text: str) -> list[str]:
    """Every 8-character run of the key found in ``text``."""
    return [KEY[i : i + 8] for i in range(len(KEY) - 7) if KEY[i : i + 8] in text]


def _run_dir_text(run_dir: Path) -> str:
    return "\n".join(path.read_text("utf-8", "replace") for path in run_dir.rglob("*") if path.is_file())


def _failures(run_dir: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line) for path in list_shards(run_dir, "failed") for line in path.read_text().splitlines()
    ]


def _checked_run(summary: dict[str, Any], run_dir: Path, error_class: str | None) -> list[dict[str, Any]]:
    """What every hostile run must show: it completes, good lines become records, the bad ones failure records
    of ``error_class``, and no piece of the key is anywhere in the run directory or the summary."""
    assert summary["status"] == "complete", summary
    records = summary["records"]
    assert records["accepted"] + records["rejected"] + records["failed"] == ROWS
    failures = _failures(run_dir)
    if error_class is not None:
        assert 0 < len(failures) < ROWS and records["failed"] == len(failures)
        assert {failure["error_class"] for failure in failures} == {error_class}, failures
    assert _key_pieces(_run_dir_text(run_dir) + json.dumps(summary)) == []
    return failures


def test_an_answer_that_echoes_the_key_is_refused_never_written(hostile_batches) -> None:
    summary, run_dir = hostile_batches("echo_key_answer")
    _checked_run(summary, run_dir, "key_echoed")
    assert "request signed with" not in _run_dir_text(run_dir)


def test_an_error_that_echoes_the_key_is_scrubbed_before_it_is_cut(hostile_batches) -> None:
    summary, run_dir = hostile_batches("echo_key_error")
    failures = _checked_run(summary, run_dir, "bad_request")
    # The key straddled the 300-character cut: it was replaced before the cut, so no piece of it survives.
    assert all("***" in failure["message"] and failure["status"] == 400 for failure in failures)


def test_a_model_field_that_echoes_the_key_is_scrubbed(hostile_batches) -> None:
    summary, run_dir = hostile_batches("echo_key_model")
    _checked_run(summary, run_dir, None)
    assert summary["records"]["failed"] == 0
    assert '"source_model":"***"' in _run_dir_text(run_dir).replace(" ", "")


def test_an_answer_longer_than_max_tokens_allows_is_refused(hostile_batches) -> None:
    summary, run_dir = hostile_batches("long_answer")
    failures = _checked_run(summary, run_dir, "response_too_large")
    assert all("max_tokens 256" in failure["message"] for failure in failures)
    assert "长长长长长长长长" not in _run_dir_text(run_dir)


def test_a_line_beyond_the_bound_is_refused_unread(hostile_batches) -> None:
    summary, run_dir = hostile_batches("huge_line")
    failures = _checked_run(summary, run_dir, "response_too_large")
    assert summary["batches"]["collected_lines"]["too_large"] == len(failures)
    assert all("refused unread" in failure["message"] for failure in failures)
    assert "x" * 1000 not in _run_dir_text(run_dir)


def test_a_result_file_larger_than_its_results_can_need_is_refused_unread(hostile_batches) -> None:
    summary, run_dir = hostile_batches("padded_file")
    assert summary["status"] != "complete" and "more than its results can need" in json.dumps(summary), (
        summary
    )
    assert summary["records"]["accepted"] == 0  # nothing from the refused file became a record
    assert not [path for path in run_dir.rglob("*") if path.is_file() and path.stat().st_size > 4 << 20]


@pytest.mark.parametrize("fault", ["usage_negative", "usage_huge", "usage_text"])
def test_usage_that_is_not_token_counts_is_a_named_error_and_the_ledger_holds(hostile_batches, fault) -> None:
    summary, run_dir = hostile_batches(fault)
    failures = _checked_run(summary, run_dir, "bad_usage")
    assert all("usage.prompt_tokens" in failure["message"] for failure in failures)
    tokens = summary["cost"]["tokens"]["total"]
    assert 0 < tokens["prompt"] < 10**9 and 0 < tokens["completion"] < 10**9
    # The batch object's usage was broken too: the journal keeps none rather than a number it cannot hold.
    journal = Journal(run_dir, read_only=True)
    assert [entry.usage for entry in journal.files.values()] == [None]
    assert sum(1 for path in list_shards(run_dir) for _ in path.read_text().splitlines()) == ROWS


def test_a_refusal_that_echoes_the_key_is_scrubbed_before_it_is_cut(monkeypatch, tmp_path: Path) -> None:
    # The provider wants another key, and its 401 quotes the one it got with the 300-character cut inside it.
    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.setenv("DISTILL_BATCH_SERVER_TEST_KEY", "sk-the-key-the-server-wants")
    url, stop = start_in_thread(FakeTeacherSettings(api_key_env="DISTILL_BATCH_SERVER_TEST_KEY"))
    try:
        source = tmp_path / "in.jsonl"
        source.write_text(json.dumps({"id": "c0", "input": "合同0:甲方A公司,乙方B公司。"}) + "\n")
        config = GenerateConfig(
            input=source,
            output_dir=tmp_path / "run",
            teacher={"base_url": url + "/v1", "model": "fake-teacher", "api_key_env": KEY_ENV},
            mode="batch",
            batch=FAST,
        )
        summary = run_generation(config, progress=False)
    finally:
        stop()
    assert summary["status"] == "fatal" and "HTTP 401" in summary["message"] and "***" in summary["message"]
    assert _key_pieces(_run_dir_text(config.output_dir) + json.dumps(summary)) == []
