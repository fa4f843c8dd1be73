"""The reference teacher answers every known contract correctly over real HTTP, in the CoT format, with usage."""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request

import pytest
from distill.engine.parsing import parse_cot
from distill.engine.prompts import build_instruction, load_template, render_prompt

from distill.pipeline.contract_task import TASK_DESCRIPTION
from distill.pipeline.contracts import canonical_answer, load_truth, make_contract_sets
from distill.processes import free_port, run_server
from distill.testing.fake_teacher import start_in_thread
from distill.testing.reference_teacher import ReferenceTeacher, reference_settings


def _post(base_url: str, body: dict) -> dict:
    request = urllib.request.Request(
        base_url + "/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _ask(base_url: str, prompt: str, temperature: float = 0.3) -> dict:
    body = {
        "model": "reference-teacher",
        "temperature": temperature,
        "messages": [{"role": "user", "content": prompt}],
    }
    return _post(base_url, body)


@pytest.fixture(scope="module")
def contract_sets(tmp_path_factory):
    return make_contract_sets(tmp_path_factory.mktemp("contracts"), train_count=30, eval_count=10)


@pytest.fixture(scope="module")
def teacher(contract_sets):
    contracts = load_truth(contract_sets.truth_path)
    url, stop = start_in_thread(
        reference_settings(latency_ms=5, latency_spread_ms=1), ReferenceTeacher(contracts)
    )
    yield url, contracts
    stop()


def test_answers_every_contract_correctly_in_the_seed_template(teacher):
    url, contracts = teacher
    template = load_template("zh")
    for contract in contracts:
        reply = _ask(url, render_prompt(template, TASK_DESCRIPTION, contract.text))
        text = reply["choices"][0]["message"]["content"]
        parsed = parse_cot(text)
        assert parsed is not None, text
        thinking, answer = parsed
        assert json.loads(answer) == contract.truth
        assert answer == canonical_answer(contract.truth)
        assert contract.facts["amount"]["text"] in thinking and contract.truth["金额"] in thinking
        assert contract.truth["签订日期"] in thinking
        for other in contract.facts["other_parties"]:
            assert other["name"] in thinking  # says why the guarantor/witness is not a party
        assert reply["usage"]["completion_tokens"] > 50 and reply["usage"]["prompt_tokens"] > 100


def test_english_template_gets_english_markers_and_the_plain_instruction_works_too(teacher):
    url, contracts = teacher
    contract = contracts[0]
    english = _ask(url, render_prompt(load_template("en"), TASK_DESCRIPTION, contract.text))
    text = english["choices"][0]["message"]["content"]
    assert text.startswith("[Thinking]") and json.loads(parse_cot(text)[1]) == contract.truth
    plain = _ask(url, build_instruction(TASK_DESCRIPTION, contract.text))
    assert json.loads(parse_cot(plain["choices"][0]["message"]["content"])[1]) == contract.truth


def test_samples_at_different_temperatures_reason_in_different_words(teacher):
    url, contracts = teacher
    prompt = build_instruction(TASK_DESCRIPTION, contracts[3].text)
    texts = {
        _ask(url, prompt, temperature)["choices"][0]["message"]["content"]
        for temperature in (0.3, 0.8, 1.0, 0.5)
    }
    answers = {parse_cot(text)[1] for text in texts}
    assert len(texts) >= 2 and len(answers) == 1


def test_an_unknown_contract_is_a_400_not_a_made_up_answer(teacher):
    url, contracts = teacher
    with pytest.raises(urllib.error.HTTPError) as caught:
        _ask(
            url,
            build_instruction(
                TASK_DESCRIPTION, contracts[0].text.replace(contracts[0].truth["甲方"], "某某公司")
            ),
        )
    assert caught.value.code == 400
    assert "only knows the inputs" in json.loads(caught.value.read())["error"]["message"]


def test_judge_prompts_get_a_field_agreement_score(teacher):
    url, contracts = teacher
    contract = contracts[1]
    reference = canonical_answer(contract.truth)
    wrong = dict(contract.truth, 金额="1", 签订日期="1999-01-01")

    def judge(answer: str) -> str:
        prompt = f"问题:{contract.text}\n参考答案:{reference}\n待评估答案:{answer}\n只输出0到10的分数:"
        return _ask(url, prompt, 0.0)["choices"][0]["message"]["content"]

    assert judge(reference) == "10"
    assert judge("【思考】略\n\n【答案】" + json.dumps(wrong, ensure_ascii=False)) == "6"
    assert judge("我不知道") == "0"


def test_the_command_serves_over_a_real_process_with_streaming(contract_sets, tmp_path):
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "distill",
        "serve-reference-teacher",
        "--truth",
        str(contract_sets.truth_path),
        "--port",
        str(port),
        "--latency-ms",
        "200",
        "--latency-spread-ms",
        "0",
        "--stream-ms-per-token",
        "1",
    ]
    contract = load_truth(contract_sets.truth_path)[-1]
    with run_server(command, port=port, log_path=tmp_path / "teacher.log", timeout_s=60) as server:
        with urllib.request.urlopen(server.base_url + "/v1/models", timeout=10) as response:
            listed = {model["id"] for model in json.loads(response.read())["data"]}
        assert listed == {"reference-teacher", "reference-judge"}
        started = time.monotonic()
        body = {
            "model": "reference-teacher",
            "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": build_instruction(TASK_DESCRIPTION, contract.text)}],
        }
        request = urllib.request.Request(
            server.base_url + "/v1/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        pieces, usage = [], None
        with urllib.request.urlopen(request, timeout=30) as response:
            for line in response:
                line = line.decode().strip()
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line[6:])
                usage = event.get("usage") or usage
                pieces += [choice["delta"].get("content") or "" for choice in event["choices"]]
        elapsed = time.monotonic() - started
    text = "".join(pieces)
    assert json.loads(parse_cot(text)[1]) == contract.truth
    assert usage["completion_tokens"] > 50
    assert elapsed >= 0.2  # the configured time to first token is really waited
    assert "REFERENCE TEACHER" in (tmp_path / "teacher.log").read_text()


def test_a_users_task_is_answered_from_its_known_answers_and_judged_by_its_rubric():
    from distill.testing.reference_judge import judge_reply
    from distill.testing.reference_teacher import KnownAnswer, ReferenceTeacher

    known = [
        KnownAnswer("Item 7 costs 3 dollars", {"name": "Item 7", "price": 3}),
        KnownAnswer("Hello there", "Hi!"),
    ]
    teacher = ReferenceTeacher([], known)
    prompt = "Task: extract.\n\nInput: Item 7 costs   3 dollars\n\nAnswer with [Thinking] and [Final Answer]."
    reply = teacher({"messages": [{"role": "user", "content": prompt}]})
    assert reply.startswith("[Thinking]") and reply.endswith('[Final Answer]\n{"name": "Item 7", "price": 3}')
    # The judge: field agreement for a JSON reference (numbers compared as numbers), word overlap for text.
    json_prompt = '问题:q\n参考答案:{"name": "Item 7", "price": 3}\n待评估答案:{"name": "Item 7", "price": "3.0"}\n只输出0到10的分数:'
    assert judge_reply(json_prompt) == "10"
    half = '问题:q\n参考答案:{"name": "Item 7", "price": 3}\n待评估答案:{"name": "Item 8", "price": 3}\n只输出0到10的分数:'
    assert judge_reply(half) == "5"
    text = "问题:q\n参考答案:Ana reports that the app crashes.\n待评估答案:Ana reports a crash.\n只输出0到10的分数:"
    assert 0 < float(judge_reply(text)) < 10
    same = "问题:q\n参考答案:Ana reports that the app crashes.\n待评估答案:ana reports that the app crashes\n只输出0到10的分数:"
    assert judge_reply(same) == "10"
