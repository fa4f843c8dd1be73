"""Judge first, people second: scores through the engine (cached), low_score rejections, overrule counts."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import pytest
import yaml

from distill.review.decisions import decisions_path
from distill.review.log import read_entries
from distill.review.scores import read as read_scores
from distill.testing.fake_teacher import FakeTeacherSettings, start_in_thread

from .helpers import contract_answer, record, review_server, write_shard


def _judge_reply(body):
    """A judge that dislikes answers with a wrong amount, and once says something that is not a score."""
    prompt = body["messages"][-1]["content"]
    answer = prompt.split("待评估答案:", 1)[1]
    if "无法评分" in answer:
        return "I cannot score this."
    return "分数:3" if "错误金额" in answer else "9/10"


@pytest.fixture
def judge():
    base_url, stop = start_in_thread(
        FakeTeacherSettings(model="judge-1", latency_ms=1), responder=_judge_reply
    )
    yield base_url
    stop()


def _sent(base_url):
    with urllib.request.urlopen(base_url + "/stats", timeout=10) as response:
        return json.loads(response.read())["total"]


def _run(run_dir):
    good = [
        record(f"g{n}", 0, contract_answer("北京星河科技有限公司", "上海云帆贸易有限公司", f"{n}0万元"))
        for n in range(1, 5)
    ]
    bad = [
        record(f"b{n}", 0, contract_answer("北京星河科技有限公司", "上海云帆贸易有限公司", f"错误金额{n}"))
        for n in range(1, 3)
    ]
    odd = [record("o1", 0, contract_answer("北京星河科技有限公司", "无法评分", "1万元"))]
    write_shard(run_dir, "accepted", good + bad + odd)
    return run_dir


def _config(path, judge_url, threshold):
    path.write_text(
        yaml.safe_dump(
            {
                "reviewer": "ana",
                "guideline": "金额必须与合同一致。",
                "judge": {"base_url": judge_url + "/v1", "model": "judge-1", "threshold": threshold},
            },
            allow_unicode=True,
        )
    )
    return str(path)


def _report(run_dir, config):
    done = subprocess.run(
        [sys.executable, "-m", "distill", "review", str(run_dir), "--config", config, "--report"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), done.stderr


def test_the_judge_scores_rejects_below_the_threshold_and_people_overrule_it(tmp_path, judge):
    run_dir = _run(tmp_path / "run")
    config = _config(tmp_path / "review.yaml", judge, 5)
    report, notes = _report(run_dir, config)
    assert "judge: 6 of 7 records scored (0 from the cache, 7 sent)" in notes
    scores = read_scores(run_dir)
    assert scores[("b1", 0)].score == 3 and scores[("g1", 0)].score == 9
    assert scores[("o1", 0)].score is None and scores[("o1", 0)].problem == "no_number"
    assert report["counts"]["judge_rejected"] == 2 and report["counts"]["unreviewed"] == 5
    judged = [e for _, e in read_entries(decisions_path(run_dir))]
    assert {(e["id"], e["decision"], e["reason"], e["by"]) for e in judged} == {
        ("b1", "reject", "low_score", "judge"),
        ("b2", "reject", "low_score", "judge"),
    }
    sent = _sent(judge)

    with review_server(str(run_dir), "--config", config) as server:
        assert _sent(judge) == sent  # every score came from the cache
        rows = server.get("/api/records?sort=score")["rows"]
        assert [r["id"] for r in rows[:2]] == ["b1", "b2"]  # the doubtful ones first
        assert server.get("/api/records?reason=low_score")["total"] == 2
        by_id = {r["id"]: r["row"] for r in rows}
        server.post(f"/api/records/{by_id['b1']}/decision", {"decision": "approve"})  # overrules the judge
        server.post(
            f"/api/records/{by_id['g1']}/decision", {"decision": "reject", "reason": "甲方写错"}
        )  # too
        server.post(f"/api/records/{by_id['g2']}/decision", {"decision": "approve"})  # agrees
        judged = server.get("/api/report")["judge"]
    assert (judged["compared"], judged["overruled"]) == (3, 2)
    assert judged["overrule_rate"] == pytest.approx(2 / 3)

    # A lower threshold clears the judge's own rejection of b2; b1 stays as the person decided.
    report, _ = _report(run_dir, _config(tmp_path / "review.yaml", judge, 2))
    assert report["counts"]["judge_rejected"] == 0 and report["counts"]["approved"] == 2
    assert _sent(judge) == sent
