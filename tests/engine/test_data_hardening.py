"""The data side against what real teachers and careless users do, over real HTTP and real files:
markers quoted from the input, agreeing samples, hostile token counts, edited and shrunk inputs."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from distill.engine.config import GenerateConfig
from distill.engine.ledger import Ledger
from distill.engine.records import iter_records
from distill.engine.runner import run_generation

from distill.endpoint import Endpoint
from distill.errors import UserError

EVERY_MARKER = "【思考过程】【最终答案】[Thinking][Final Answer]【思考】【答案】"
_INPUT = re.compile(r"输入内容:\n(.*)\n请按以下格式回答:", re.S)


def _input_of(body: dict) -> str:
    prompt = body["messages"][0]["content"]
    match = _INPUT.search(prompt)
    assert match, prompt
    return match.group(1).strip()


def config_for(tmp_path: Path, url: str, rows: list[str], **settings) -> GenerateConfig:
    inputs = tmp_path / "in.jsonl"
    inputs.write_text(
        "".join(
            json.dumps({"id": f"c{i}", "input": text}, ensure_ascii=False) + "\n"
            for i, text in enumerate(rows)
        )
    )
    teacher = Endpoint(base_url=url + "/v1", model="fake-teacher", concurrency=4, api_key_env=None)
    return GenerateConfig(
        input=inputs, output_dir=tmp_path / "run", task="抽取合同要素", teacher=teacher, **settings
    )


def test_inputs_quoting_every_marker_keep_the_teachers_own_answer(tmp_path, fake_teacher_thread):
    """The teacher quotes its input in its reasoning, as real ones do; the input holds every marker."""

    def responder(body: dict) -> str:
        text = _input_of(body)
        return f"【思考过程】\n原文:{text}\n逐项核对甲乙方与金额。\n【最终答案】\n要素:{text[:4]}的甲方与乙方已核对,金额与日期均与原文一致,可以归档,无需补充其他说明或者修改,也没有发现相互矛盾的条款。"

    rows = [f"合同{i}:甲方A{EVERY_MARKER}乙方B,金额{i}元。" for i in range(4)]
    rows.append("合同:\n【最终答案】\n乙方C\n[Final Answer]\n金额五元")
    teacher = fake_teacher_thread(responder)
    assert (
        run_generation(config_for(tmp_path, teacher.base_url, rows), progress=False)["status"] == "complete"
    )
    accepted = list(iter_records(tmp_path / "run", kinds=("accepted",)))
    assert len(accepted) == 5
    for record in accepted:
        assert record.output.startswith("要素:") and "【" not in record.output and "[" not in record.output
        assert record.thinking.startswith("原文:")


def test_samples_of_one_input_that_agree_are_all_kept_duplicates_across_inputs_are_not(
    tmp_path, fake_teacher_thread
):
    """A task with one right answer: every sample of an input says the same thing."""
    same = "结论:甲方为北京某科技有限公司,乙方为上海某贸易有限公司,合同金额为人民币十二万元整,签订于二〇二四年三月一日。"

    def responder(body: dict) -> str:
        text = _input_of(body)
        answer = same if "重复" in text else f"{same}(编号{text})"
        return f"【思考过程】\n核对。\n【最终答案】\n{answer}"

    rows = ["合同甲", "合同乙重复", "合同丙重复"]
    teacher = fake_teacher_thread(responder)
    config = config_for(tmp_path, teacher.base_url, rows, samples_per_input=3)
    summary = run_generation(config, progress=False)
    assert summary["status"] == "complete"
    assert summary["records"]["accepted"] == 6 and summary["rejected_by_reason"]["duplicate"] == 3
    duplicates = {record.id for record in iter_records(tmp_path / "run", kinds=("rejected",))}
    assert len(duplicates) == 1 and duplicates <= {"c1", "c2"}


class _HostileUsage(BaseHTTPRequestHandler):
    """A teacher whose `usage` holds counts no 32-bit (or 64-bit) field can hold."""

    counts = iter([-5, 1 << 70, "12", None, 2**32, -(1 << 65)] * 1000)

    def do_POST(self) -> None:  # noqa: N802 - the http.server interface
        self.rfile.read(int(self.headers["Content-Length"]))
        count = next(self.counts)
        answer = (
            "【思考过程】\n核对。\n【最终答案】\n"
            + "甲方A公司,乙方B公司,金额一万元,签订日期二〇二四年一月一日。" * 2
        )
        body = {
            "choices": [{"message": {"content": answer + str(count)}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": count, "completion_tokens": count},
        }
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hostile_usage_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HostileUsage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_no_usage_a_server_sends_can_break_the_run_directory(tmp_path, hostile_usage_server):
    config = config_for(tmp_path, hostile_usage_server, [f"合同{i}" for i in range(12)])
    first = run_generation(config, progress=False)
    assert first["status"] == "complete" and first["done"] == 12
    again = run_generation(config, progress=False)  # the next start reads every entry back
    assert again["status"] == "complete" and again["session"]["records"] == 0
    ledger = Ledger(tmp_path / "run")
    assert ledger.finished == 12 and 0 <= ledger.prompt_tokens <= 12 * 0xFFFFFFFF
    ledger.close()
    for record in iter_records(tmp_path / "run"):
        # The client refuses counts that are not token counts (`bad_usage`); what is written always fits.
        if record.kind == "failed":
            assert record.error_class == "bad_usage"
        else:
            assert 0 <= record.usage.prompt_tokens <= 0xFFFFFFFF


def test_an_edited_row_is_named_and_a_shrunk_input_never_reports_done_beyond_total(
    tmp_path, fake_teacher_thread
):
    teacher = fake_teacher_thread(latency_ms=1)
    rows = [f"合同{i}:甲方A公司,乙方B公司,金额{i}元。" for i in range(6)]
    config = config_for(tmp_path, teacher.base_url, rows)
    assert run_generation(config, progress=False)["status"] == "complete"
    edited = rows.copy()
    edited[2] = "合同2:甲方A公司,乙方B公司,金额九百元。"
    config_for(tmp_path, teacher.base_url, edited)
    with pytest.raises(UserError, match=r"in\.jsonl:3: input: row 'c2' changed since its record"):
        run_generation(config, progress=False)
    config_for(tmp_path, teacher.base_url, rows[:4])  # shrunk: two rows gone
    summary = run_generation(config, progress=False)
    assert summary["status"] == "complete" and summary["total"] == 4 and summary["done"] == 4
    assert summary["records_of_rows_no_longer_in_the_input"] == 2


def test_structured_answers_that_break_the_schema_are_rejected_as_schema(tmp_path, fake_teacher_thread):
    def responder(body: dict) -> str:
        number = int(_input_of(body).removeprefix("合同"))
        amount = number * 100 if number % 2 else f"{number}百元"  # every even row breaks the schema
        return f'【思考过程】\n核对。\n【最终答案】\n{{"甲方": "A{number}", "乙方": "B", "金额": {json.dumps(amount, ensure_ascii=False)}}}'

    teacher = fake_teacher_thread(responder)
    schema = {
        "type": "object",
        "properties": {"甲方": {"type": "string"}, "乙方": {"type": "string"}, "金额": {"type": "integer"}},
        "required": ["甲方", "乙方", "金额"],
    }
    config = config_for(tmp_path, teacher.base_url, [f"合同{i}" for i in range(10)], answer_schema=schema)
    config.filters.min_output_chars = 0
    summary = run_generation(config, progress=False)
    assert summary["records"]["accepted"] == 5 and summary["rejected_by_reason"]["schema"] == 5
    assert {
        json.loads(record.output)["金额"] for record in iter_records(tmp_path / "run", kinds=("accepted",))
    } == {100, 300, 500, 700, 900}


def test_target_accepted_stops_at_n_and_resumes_exactly_once_under_a_candidate_cap(
    tmp_path, fake_teacher_thread
):
    teacher = fake_teacher_thread(latency_ms=1, bad_format_rate=0.5)
    rows = [f"合同{i}:甲方A公司,乙方B公司,金额{i}元。" for i in range(200)]
    config = config_for(tmp_path, teacher.base_url, rows, target_accepted=20, max_candidates=150)
    first = run_generation(config, progress=False)
    accepted = first["records"]["accepted"]
    assert first["status"] == "target_reached" and 20 <= accepted <= 20 + config.teacher.concurrency - 1
    sent = teacher.stats()["total"]
    again = run_generation(config, progress=False)  # already there: nothing is sent
    assert again["status"] == "target_reached" and teacher.stats()["total"] == sent
    more = config.model_copy(update={"target_accepted": 1000})  # more than the cap allows
    capped = run_generation(more, progress=False)
    assert capped["status"] == "candidate_cap_reached" and capped["done"] == 150
    keys = [(record.id, record.sample_index) for record in iter_records(tmp_path / "run")]
    assert len(keys) == len(set(keys)) == 150  # exactly once across the three starts


def test_no_request_starts_after_the_target_is_reached(tmp_path, fake_teacher_thread):
    """Four in flight, answered together: the answer that reaches the target frees its slot, and nothing may
    take it. Only the three others still in flight may add to the target, and every request sent is recorded."""
    teacher = fake_teacher_thread(latency_ms=1)
    rows = [f"合同{i}:甲方A公司,乙方B公司,金额{i}元。" for i in range(400)]
    config = config_for(tmp_path, teacher.base_url, rows)
    accepted = 0
    for _ in range(40):  # each start resumes the last; the race it guards against is one of event-loop order
        target = accepted + 5
        summary = run_generation(config.model_copy(update={"target_accepted": target}), progress=False)
        records = summary["records"]
        accepted = records["accepted"]
        assert summary["status"] == "target_reached", summary
        assert target <= accepted <= target + config.teacher.concurrency - 1, (target, records)
        assert teacher.stats()["total"] == accepted + records["rejected"] + records["failed"]


def test_self_consistency_keeps_the_majority_and_flags_inputs_that_disagree(tmp_path, fake_teacher_thread):
    """Three samples per input. 甲: all agree (JSON with other key order and spacing); 乙: two of three agree;
    丙: all differ, so it is flagged and nothing of it is kept."""
    base = "结论如下,甲方为北京某科技有限公司,乙方为上海某贸易有限公司,签订于二〇二四年三月一日,金额为"

    def responder(body: dict) -> str:
        text, sample = _input_of(body), body["seed"]
        if text == "甲":
            answer = [
                '{"金额": 100, "甲方": "A"}',
                '{ "甲方":"a",  "金额":100 }',
                '{"甲方": "Ａ", "金额": 100}',
            ][sample]
        elif text == "乙":
            answer = base + ("一百元" if sample < 2 else "九百元")
        else:
            answer = base + ["一", "二", "三"][sample] + "元"
        return f"【思考过程】\n核对。\n【最终答案】\n{answer}"

    teacher = fake_teacher_thread(responder)
    config = config_for(tmp_path, teacher.base_url, ["甲", "乙", "丙"], samples_per_input=3, send_seed=True)
    config.filters.agreement, config.filters.min_output_chars = True, 0
    summary = run_generation(config, progress=False)
    assert summary["status"] == "complete"
    by_reason = summary["rejected_by_reason"]
    assert (
        summary["records"]["accepted"] == 5
        and by_reason["disagreement"] == 1
        and by_reason["low_agreement"] == 3
    )
    assert summary["agreement"] == {
        "inputs_compared": 3,
        "mean_rate": round((1 + 2 / 3 + 1 / 3) / 3, 4),
        "flagged_inputs": 1,
    }
    rates = {
        (record.id, record.kind): record.agreement
        for record in iter_records(tmp_path / "run", kinds=("accepted", "rejected"))
    }
    assert rates[("c0", "accepted")] == 1.0 and rates[("c1", "accepted")] == 0.6667
    assert rates[("c2", "rejected")] == 0.3333


def test_near_duplicates_across_inputs_are_rejected_and_the_index_survives_a_resume(
    tmp_path, fake_teacher_thread
):
    body = "结论如下:甲方为北京某科技有限公司,乙方为上海某贸易有限公司,合同金额为人民币十二万元整,签订日期为二〇二四年三月一日,违约金为合同金额的百分之五。"
    other = "The contract binds Acme Corporation and Bolt Limited; the price is five hundred thousand dollars, payable in two instalments."

    def responder(body_: dict) -> str:
        text = _input_of(body_)
        answer = {
            "a": body,
            "b": body.replace("百分之五", "百分之六"),
            "c": other,
            "d": body.replace("三月", "四月"),
        }[text[0]]
        return f"【思考过程】\n核对。\n【最终答案】\n{answer}"

    teacher = fake_teacher_thread(responder)
    config = config_for(tmp_path, teacher.base_url, ["a", "b", "c"])
    config.filters.near_dedupe = 0.7
    summary = run_generation(config, progress=False)
    assert summary["records"]["accepted"] == 2 and summary["rejected_by_reason"]["near_duplicate"] == 1
    # A new input resumed into the same run is checked against the answers accepted before.
    config_for(tmp_path, teacher.base_url, ["a", "b", "c", "d"])
    summary = run_generation(config, progress=False)
    assert summary["records"]["accepted"] == 2 and summary["rejected_by_reason"]["near_duplicate"] == 2


class _ReasoningTeacher(BaseHTTPRequestHandler):
    """A reasoning model: the thinking in `reasoning_content` (or `reasoning`), the answer alone in `content`."""

    def do_POST(self) -> None:  # noqa: N802 - the http.server interface
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        text = _input_of(body)
        field = "reasoning" if text.endswith("1") else "reasoning_content"
        answer = f"结论:{text}的甲方为北京某科技有限公司,乙方为上海某贸易有限公司,金额为人民币十二万元整,签订于二〇二四年三月一日。"
        message = {"content": answer, field: f"先找甲乙方,再找{text}的金额。"}
        if text.endswith("2"):  # a model that also writes the markers into its content
            message["content"] = f"【思考过程】\n略\n【最终答案】\n{answer}"
        data = json.dumps(
            {
                "choices": [{"message": message, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 9},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = _HostileUsage.do_GET
    log_message = _HostileUsage.log_message


def test_a_reasoning_models_thinking_is_captured_from_its_field(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ReasoningTeacher)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        summary = run_generation(config_for(tmp_path, url, ["合同0", "合同1", "合同2"]), progress=False)
    finally:
        server.shutdown()
        server.server_close()
    assert summary["records"]["accepted"] == 3, summary
    for record in iter_records(tmp_path / "run", kinds=("accepted",)):
        assert record.thinking_source == "field" and record.thinking.startswith("先找甲乙方")
        assert record.output.startswith("结论:") and "【" not in record.output
        assert record.full_output == f"【思考】{record.thinking}\n\n【答案】{record.output}"
