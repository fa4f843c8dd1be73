"""run_generation end to end against the fake teacher over real HTTP: faults, budget, changed settings,
retried failures, a full disk and a refused key each end with every (id, sample) recorded at most once."""

from __future__ import annotations

import gc
import json
import os
from collections import Counter
from pathlib import Path

import pytest
from distill.engine.config import GenerateConfig
from distill.engine.runner import prepare_run, run_generation
from distill.engine.shards import list_shards

from distill.endpoint import Endpoint
from distill.errors import UserError


def write_inputs(path: Path, rows: int, start: int = 0) -> Path:
    with path.open("a", encoding="utf-8") as handle:
        for i in range(start, start + rows):
            handle.write(
                json.dumps(
                    {"id": f"c{i}", "input": f"合同{i}:甲方A公司,乙方B公司,金额{i * 10}元。"},
                    ensure_ascii=False,
                )
                + "\n"
            )
    return path


def make_config(tmp_path: Path, base_url: str, rows: int = 40, **overrides) -> GenerateConfig:
    inputs = tmp_path / "in.jsonl"
    if not inputs.exists():
        write_inputs(inputs, rows)
    teacher = {"base_url": base_url + "/v1", "model": "fake-teacher", "concurrency": 16, "api_key_env": None}
    teacher.update({k: v for k, v in overrides.items() if k in Endpoint.model_fields})
    settings = {"input": inputs, "output_dir": tmp_path / "run", "task": "抽取合同要素", "teacher": teacher}
    return GenerateConfig(**{**settings, **{k: v for k, v in overrides.items() if k not in teacher}})


def with_teacher(config: GenerateConfig, **fields) -> GenerateConfig:
    """``config`` with some of its teacher's fields changed (validated again)."""
    return GenerateConfig.model_validate(
        {**config.model_dump(), "teacher": {**config.teacher.model_dump(), **fields}}
    )


def records(run_dir: Path) -> dict[str, Counter]:
    by_kind: dict[str, Counter] = {"accepted": Counter(), "rejected": Counter(), "failed": Counter()}
    for path in list_shards(run_dir):
        kind = path.name.split("-")[0]
        for line in path.read_bytes().splitlines():
            record = json.loads(line)
            by_kind[kind][(record["id"], record["sample_index"])] += 1
    return by_kind


def assert_exactly_once(run_dir: Path, expected: set) -> dict[str, Counter]:
    by_kind = records(run_dir)
    every = Counter()
    for counter in by_kind.values():
        every.update(counter)
    assert set(every) == expected
    assert max(every.values()) == 1
    return by_kind


def test_ten_percent_faults_still_give_one_record_each(tmp_path, fake_teacher_thread):
    teacher = fake_teacher_thread(
        latency_ms=5,
        error_500_rate=0.03,
        error_503_rate=0.03,
        reset_rate=0.02,
        truncated_rate=0.02,
        bad_format_rate=0.05,
        refusal_rate=0.05,
        short_rate=0.05,
    )
    config = make_config(tmp_path, teacher.base_url, rows=150, samples_per_input=2, retries=1)
    summary = run_generation(config, progress=False)
    expected = {(f"c{i}", s) for i in range(150) for s in range(2)}
    by_kind = assert_exactly_once(config.output_dir, expected)
    assert summary["status"] == "complete" and summary["done"] == 300 and summary["remaining"] == 0
    assert summary["records"] == {kind: sum(counter.values()) for kind, counter in by_kind.items()}
    reasons = summary["rejected_by_reason"]
    assert reasons["format"] > 0 and reasons["refusal"] > 0 and reasons["too_short"] > 0
    assert sum(reasons.values()) == summary["records"]["rejected"]
    assert summary["records"]["failed"] > 0  # one retry is not enough for every fault
    assert set(summary["session"]["failed_by_class"]) <= {"server_error", "connection", "bad_response"}
    assert summary["errors_by_class"]["server_error"] > summary["records"]["failed"] // 2
    on_disk = json.loads((config.output_dir / "summary.json").read_text())
    assert on_disk["records"] == summary["records"]
    failure = json.loads(list_shards(config.output_dir, "failed")[0].read_bytes().splitlines()[0])
    assert set(failure) >= {"id", "sample_index", "error_class", "message", "status", "attempts"}
    assert failure["attempts"] == 2


def test_record_fields_and_filters(tmp_path, fake_teacher_thread):
    long_input = "合同2:甲方北京某科技有限公司,乙方上海某贸易有限公司,采购服务器二十台,总金额人民币一百二十万元,交付日期二〇二四年五月。"
    inputs = tmp_path / "in.jsonl"
    write_inputs(inputs, 2)
    inputs.open("a", encoding="utf-8").write(
        json.dumps({"id": "c2", "input": long_input}, ensure_ascii=False) + "\n"
    )
    write_inputs(inputs, 1, start=3)
    answer = "甲方为A公司,乙方为B公司,合同金额为零元;这是一份完整的采购合同要素抽取结果,各项要素均已核对,没有遗漏。"
    answers = {
        "合同0:": "【思考过程】\n看金额\n【最终答案】\n" + answer,
        "合同1:": "【思考过程】\n同上\n【最终答案】\n" + answer,  # an exact duplicate of c0's answer
        "合同2:": "【思考过程】\n复述\n【最终答案】\n抽取合同要素\n\n"
        + long_input,  # an echo of the instruction
        "合同3:": "I'm sorry, I cannot help with that.",  # a refusal without markers
    }

    def responder(body):
        prompt = body["messages"][0]["content"]
        return next(text for key, text in answers.items() if key in prompt)

    teacher = fake_teacher_thread(responder=responder, latency_ms=1)
    config = make_config(tmp_path, teacher.base_url, concurrency=1)
    collector = gc.get_threshold()
    summary = run_generation(config, progress=False)
    assert gc.get_threshold() == collector and gc.get_freeze_count() == 0  # the run's own settings undone
    assert summary["records"] == {"accepted": 1, "rejected": 3, "failed": 0}
    reasons = summary["rejected_by_reason"]
    assert (reasons["duplicate"], reasons["similar_to_instruction"], reasons["refusal"]) == (1, 1, 1)
    accepted = json.loads(list_shards(config.output_dir, "accepted")[0].read_text())
    assert accepted["id"] == "c0" and accepted["thinking"] == "看金额" and accepted["output"] == answer
    assert accepted["full_output"] == f"【思考】看金额\n\n【答案】{answer}"
    assert accepted["instruction"] == "抽取合同要素\n\n合同0:甲方A公司,乙方B公司,金额0元。"
    assert accepted["temperature"] == 0.3 and accepted["finish_reason"] == "stop"
    assert accepted["source_model"] == "fake-teacher" and accepted["generated_at"].endswith("Z")
    assert accepted["usage"]["completion_tokens"] > 0 and accepted["latency_ms"] > 0
    refusal = [
        json.loads(line)
        for line in list_shards(config.output_dir, "rejected")[0].read_text().splitlines()
        if json.loads(line)["id"] == "c3"
    ][0]
    assert refusal["reject_reason"] == "refusal" and refusal["response"].startswith("I'm sorry")


def test_budget_stop_leaves_a_resumable_run(tmp_path, fake_teacher_thread):
    teacher = fake_teacher_thread(latency_ms=5)
    price = {"input_per_million": 1000.0, "output_per_million": 1000.0, "currency": "CNY"}
    # ~250 tokens per answer at 1000/M: each answer costs ~0.25, but each request in flight holds its most
    # expensive outcome (~1.1 with max_tokens 1024), so spend stops short of 3 and never passes it.
    config = make_config(tmp_path, teacher.base_url, rows=60, price=price, budget=3.0, concurrency=4)
    first = run_generation(config, progress=False)
    assert first["status"] == "budget_reached"
    assert (
        0 < first["done"] < 60 and 1.5 <= first["cost"]["total"] <= 3.0 and first["cost"]["currency"] == "CNY"
    )
    # The same budget again: already spent, nothing is sent.
    sent_before = teacher.stats()["total"]
    again = run_generation(config, progress=False)
    assert again["status"] == "budget_reached" and teacher.stats()["total"] == sent_before
    bigger = config.model_copy(update={"budget": 1000.0})
    final = run_generation(bigger, progress=False)
    assert final["status"] == "complete" and final["cost"]["total"] > first["cost"]["total"]
    assert_exactly_once(config.output_dir, {(f"c{i}", 0) for i in range(60)})
    assert teacher.stats()["duplicate_requests"] == 0


def test_changed_settings_are_refused_unless_forced(tmp_path, fake_teacher_thread):
    teacher = fake_teacher_thread(latency_ms=1)
    config = make_config(tmp_path, teacher.base_url, rows=10)
    run_generation(config, progress=False)
    changed = with_teacher(config, concurrency=3).model_copy(
        update={"temperature_first": 0.5, "samples_per_input": 2}
    )
    with pytest.raises(UserError) as error:
        run_generation(changed, progress=False)
    message = str(error.value)
    assert "temperature_first: 0.3 -> 0.5" in message and "samples_per_input: 1 -> 2" in message
    assert "concurrency" not in message and "--force" in message
    sent = teacher.stats()["total"]
    summary = run_generation(changed, force=True, progress=False)
    # Only the new second samples were sent.
    assert summary["status"] == "complete" and teacher.stats()["total"] - sent == 10
    assert_exactly_once(config.output_dir, {(f"c{i}", s) for i in range(10) for s in range(2)})
    manifest = json.loads((config.output_dir / "run.json").read_text())
    assert manifest["fingerprint"]["temperature_first"] == 0.5 and len(manifest["forced_changes"]) == 1


def test_a_local_teacher_restarted_on_another_port_resumes_the_same_run(tmp_path, fake_teacher_thread):
    first = fake_teacher_thread(latency_ms=1)
    config = make_config(tmp_path, first.base_url, rows=12)
    run_generation(config, progress=False)
    second = fake_teacher_thread(latency_ms=1)  # the teacher started again: a new free port
    assert second.base_url != first.base_url
    summary = run_generation(with_teacher(config, base_url=second.base_url + "/v1"), progress=False)
    assert summary["status"] == "complete" and second.stats()["total"] == 0  # resumed, nothing re-sent
    assert_exactly_once(config.output_dir, {(f"c{i}", 0) for i in range(12)})


def test_template_change_is_named_without_dumping_it(tmp_path, fake_teacher_thread):
    teacher = fake_teacher_thread(latency_ms=1)
    config = make_config(tmp_path, teacher.base_url, rows=3)
    run_generation(config, progress=False)
    with pytest.raises(UserError, match="template: text changed"):
        prepare_run(config.model_copy(update={"template": "en"}))


def test_appended_rows_are_picked_up_and_the_watermark_skips_finished_ones(tmp_path, fake_teacher_thread):
    teacher = fake_teacher_thread(latency_ms=1)
    config = make_config(tmp_path, teacher.base_url, rows=1200, concurrency=32)
    assert run_generation(config, progress=False)["status"] == "complete"
    run = prepare_run(config)
    assert run.position.start[0] > 0  # a resume seeks past the finished rows instead of re-reading them
    run.close()
    write_inputs(config.input, 5, start=1200)
    sent = teacher.stats()["total"]
    summary = run_generation(config, progress=False)
    assert summary["total"] == 1205 and teacher.stats()["total"] - sent == 5


def test_retry_failed_sends_failures_again(tmp_path, fake_teacher_thread):
    broken = fake_teacher_thread(latency_ms=1, error_500_rate=1.0)
    config = make_config(tmp_path, broken.base_url, rows=8, retries=0)
    first = run_generation(config, progress=False)
    assert first["records"]["failed"] == 8 and first["status"] == "complete"
    healthy = fake_teacher_thread(latency_ms=1)
    fixed = with_teacher(config, base_url=healthy.base_url + "/v1")
    assert run_generation(fixed, force=True, progress=False)["done"] == 8  # failures count as finished
    assert healthy.stats()["total"] == 0
    summary = run_generation(fixed, force=True, retry_failed=True, progress=False)
    assert summary["records"] == {"accepted": 8, "rejected": 0, "failed": 0}
    assert_exactly_once(config.output_dir, {(f"c{i}", 0) for i in range(8)})
    assert len((config.output_dir / "failed-retried" / "failed-00000.jsonl").read_text().splitlines()) == 8


def test_full_disk_mid_run_stops_cleanly_and_resumes(tmp_path, fake_teacher_thread):
    teacher = fake_teacher_thread(latency_ms=2, bad_format_rate=0.5)
    config = make_config(tmp_path, teacher.base_url, rows=40)
    run_dir = config.output_dir
    prepare_run(config).close()  # run.json, no records yet
    os.symlink("/dev/full", run_dir / "accepted-00000.jsonl")
    summary = run_generation(config, progress=False)
    assert summary["status"] == "disk_full" and "free space" in summary["message"]
    assert summary["done"] < 40
    (run_dir / "accepted-00000.jsonl").unlink()  # before reading shards: /dev/full reads zeros forever
    written = records(run_dir)["rejected"]
    final = run_generation(config, progress=False)
    assert final["status"] == "complete"
    by_kind = assert_exactly_once(run_dir, {(f"c{i}", 0) for i in range(40)})
    assert set(written) <= set(by_kind["rejected"])  # nothing written before the failure was lost


def test_refused_key_stops_the_run_as_fatal(tmp_path, fake_teacher_thread, monkeypatch):
    teacher = fake_teacher_thread(latency_ms=1, api_key_env="DISTILL_TEST_SERVER_KEY")
    monkeypatch.setenv("DISTILL_TEST_SERVER_KEY", "right-key")
    monkeypatch.setenv("DISTILL_TEST_CLIENT_KEY", "wrong-key")
    config = make_config(
        tmp_path, teacher.base_url, rows=30, api_key_env="DISTILL_TEST_CLIENT_KEY", concurrency=2
    )
    summary = run_generation(config, progress=False)
    assert summary["status"] == "fatal" and summary["message"].startswith("auth:")
    assert "wrong-key" not in json.dumps(summary) and summary["done"] == 0
    assert teacher.stats()["total"] <= 2


def test_unreachable_endpoint_is_an_error_before_sending(tmp_path):
    config = make_config(tmp_path, "http://127.0.0.1:9", rows=3)
    with pytest.raises(
        UserError, match="teacher.base_url: cannot reach the teacher at http://127.0.0.1:9/v1"
    ):
        run_generation(config, progress=False)
    assert not list_shards(config.output_dir)


def test_unwritable_output_dir(tmp_path):
    target = tmp_path / "file"
    target.write_text("not a directory")
    config = make_config(tmp_path, "http://127.0.0.1:9", rows=1, output_dir=target / "run")
    with pytest.raises(UserError, match="output_dir: cannot create or write it"):
        run_generation(config, progress=False)


def test_dedupe_survives_resume(tmp_path, fake_teacher_thread):
    same = "【思考过程】\n看合同\n【最终答案】\n甲方为A公司,乙方为B公司,合同金额与日期均已核对,这是一份完整的要素抽取结果,各项信息与原文一致,可以直接用于后续的审核流程。"
    teacher = fake_teacher_thread(responder=lambda body: same, latency_ms=1)
    config = make_config(tmp_path, teacher.base_url, rows=1)
    assert run_generation(config, progress=False)["records"]["accepted"] == 1
    write_inputs(config.input, 1, start=1)  # a new row whose answer repeats the first one
    summary = run_generation(config, progress=False)
    assert summary["records"] == {"accepted": 1, "rejected": 1, "failed": 0}
    assert summary["rejected_by_reason"]["duplicate"] == 1
