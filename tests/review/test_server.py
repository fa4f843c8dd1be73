"""`distill review` as a real process on 127.0.0.1: decisions kept through kill -9, two tabs, safety rules."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
from importlib import resources

from distill.review.decisions import decisions_path
from distill.review.log import read_entries

from .helpers import review_server, small_run


def _rows(server, **params):
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return server.get(f"/api/records?{query}")["rows"]


def _logged(run_dir):
    return [entry for _, entry in read_entries(decisions_path(run_dir)) if "decision" in entry]


def test_decisions_survive_kill_9_between_them_and_never_touch_the_shards(tmp_path):
    small_run(tmp_path)
    shards_before = {p.name: p.read_bytes() for p in tmp_path.glob("*.jsonl")}
    with review_server(str(tmp_path), "--reviewer", "ana") as server:
        assert server.url.startswith("http://127.0.0.1:")
        first = _rows(server, status="accepted")[0]["row"]
        saved = server.post(f"/api/records/{first}/decision", {"decision": "approve"})
        assert saved["saved"] and saved["decision"] == "approve"
        server.kill()  # the page showed "saved": nothing may be lost from here on
    with review_server(str(tmp_path), "--reviewer", "ana") as server:
        assert server.get(f"/api/records/{first}")["current"]["decision"] == "approve"
        second = _rows(server, status="accepted", decision="unreviewed")[0]["row"]
        server.post(f"/api/records/{second}/decision", {"decision": "reject", "reason": "金额错误"})
        server.kill()
    with review_server(str(tmp_path), "--reviewer", "ana") as server:
        assert server.get(f"/api/records/{first}")["current"]["decision"] == "approve"
        current = server.get(f"/api/records/{second}")["current"]
        assert (current["decision"], current["reason"], current["reviewer"]) == ("reject", "金额错误", "ana")
        assert server.get("/api/progress")["counts"]["approved"] == 1
    assert [e["decision"] for e in _logged(tmp_path)] == ["approve", "reject"]
    assert {p.name: p.read_bytes() for p in tmp_path.glob("*.jsonl")} == shards_before


def test_two_tabs_keep_both_and_the_later_decision_on_one_record_wins(tmp_path):
    small_run(tmp_path)
    with review_server(str(tmp_path), "--reviewer", "ana") as server:
        rows = _rows(server, status="accepted")
        a, b = rows[0]["row"], rows[1]["row"]
        # Two tabs: each loaded the records before either decided (seen_seq None).
        server.post(f"/api/records/{a}/decision", {"decision": "approve", "seen_seq": None})
        server.post(f"/api/records/{b}/decision", {"decision": "approve", "seen_seq": None})
        first = server.get(f"/api/records/{a}")["current"]
        later = server.post(
            f"/api/records/{a}/decision", {"decision": "reject", "reason": "看错了", "seen_seq": None}
        )
        assert (
            later["replaced_unseen"]["decision"] == "approve"
        )  # the page says it replaced an unseen decision
        assert server.get(f"/api/records/{b}")["current"]["decision"] == "approve"
        record = server.get(f"/api/records/{a}")
        assert record["current"]["decision"] == "reject"
        assert [h["decision"] for h in record["history"]] == ["approve", "reject"]
        assert record["history"][0]["seq"] == first["seq"]
        again = server.post(
            f"/api/records/{b}/decision", {"decision": "approve", "seen_seq": later["seq"] - 1}
        )
        assert again["replaced_unseen"] is not None
    keys = [(e["id"], e["sample_index"], e["decision"]) for e in _logged(tmp_path)]
    assert len(keys) == 4 and keys[2][2] == "reject"


def test_edits_go_through_the_parser_and_filters_before_they_are_saved(tmp_path):
    small_run(tmp_path)
    with review_server(str(tmp_path)) as server:
        row = _rows(server, status="accepted")[2]["row"]
        bad = server.request(
            "POST",
            f"/api/records/{row}/decision",
            {"decision": "approve", "edit": {"output": "不是JSON的答案,而且很短"}},
        )
        assert bad[0] == 422 and b"original answer is JSON" in bad[2]
        marker = server.request(
            "POST",
            f"/api/records/{row}/decision",
            {
                "decision": "approve",
                "edit": {
                    "output": '{"甲方": "北京星河科技有限公司", "乙方": "上海云帆贸易有限公司",\n'
                    '【最终答案】 "金额": "1万元"}'
                },
            },
        )
        assert marker[0] == 422 and "answer marker" in json.loads(marker[2])["error"]
        edited = '{"甲方": "北京星河科技有限公司", "乙方": "上海云帆贸易有限公司", "金额": "35万元"}'
        saved = server.post(
            f"/api/records/{row}/decision", {"decision": "approve", "edit": {"output": edited}}
        )
        assert saved["edited"]
        assert server.get(f"/api/records/{row}")["current"]["output"] == edited
        # Approving again (the `a` key) keeps the edit; "approve the original" drops it.
        server.post(f"/api/records/{row}/decision", {"decision": "approve"})
        assert server.get(f"/api/records/{row}")["current"]["edited"]
        server.post(f"/api/records/{row}/decision", {"decision": "approve", "original": True})
        assert not server.get(f"/api/records/{row}")["current"]["edited"]
        rejected = _rows(server, status="rejected")[0]["row"]
        refused = server.request("POST", f"/api/records/{rejected}/decision", {"decision": "approve"})
        assert refused[0] == 422 and b"only accepted records" in refused[2]
    assert [e.get("edit") is not None for e in _logged(tmp_path)] == [True, True, False]


def test_the_export_honours_the_decisions(tmp_path):
    run_dir = tmp_path / "run"
    small_run(run_dir)
    edited = '{"甲方": "北京星河科技有限公司", "乙方": "上海云帆贸易有限公司", "金额": "77万元"}'
    with review_server(str(run_dir)) as server:
        rows = _rows(server, status="accepted")
        server.post(f"/api/records/{rows[0]['row']}/decision", {"decision": "approve"})
        server.post(
            f"/api/records/{rows[1]['row']}/decision", {"decision": "approve", "edit": {"output": edited}}
        )
        server.post(f"/api/records/{rows[2]['row']}/decision", {"decision": "reject"})
    outputs = {}
    for mode in ("approved", "exclude-rejected"):
        out = tmp_path / mode
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "distill",
                "export",
                "--run-dir",
                str(run_dir),
                "--out-dir",
                str(out),
                "--format",
                "alpaca",
                "--review",
                mode,
            ],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        lines = (out / "run_alpaca.jsonl").read_text(encoding="utf-8").splitlines()
        outputs[mode] = [json.loads(line) for line in lines]
        assert json.loads(done.stdout)["review"]["kept"] == len(lines)
    assert [(r["id"], r["sample_index"]) for r in outputs["approved"]] == [
        (rows[0]["id"], 0),
        (rows[1]["id"], 1),
    ]
    assert outputs["approved"][1]["output"] == edited
    assert len(outputs["exclude-rejected"]) == 11  # 12 accepted, one rejected
    assert edited in [r["output"] for r in outputs["exclude-rejected"]]


def test_only_the_pages_own_origin_and_address_may_talk_to_it(tmp_path):
    small_run(tmp_path)
    with review_server(str(tmp_path)) as server:
        port = server.url.rsplit(":", 1)[1].strip("/")
        status, headers, page = server.request("GET", "/")
        assert status == 200
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert b'<script src="static/run.js"' in page
        # DNS rebinding: a foreign name resolving to 127.0.0.1 is refused by its Host header.
        assert server.request("GET", "/api/meta", headers={"Host": f"evil.example:{port}"})[0] == 403
        row = _rows(server)[0]["row"]
        # A cross-site form post: not JSON, or JSON from another origin.
        assert (
            server.request("POST", f"/api/records/{row}/decision", headers={"Content-Type": "text/plain"})[0]
            == 415
        )
        status, _, _ = server.request(
            "POST",
            f"/api/records/{row}/decision",
            {"decision": "approve"},
            headers={"Origin": "http://evil.example"},
        )
        assert status == 403
        assert server.get("/api/progress")["counts"]["approved"] == 0


def test_another_host_needs_the_printed_token(tmp_path):
    small_run(tmp_path)
    with review_server(str(tmp_path), "--host", "0.0.0.0") as server:
        token = re.search(r"token=([\w-]+)", server.url).group(1)
        port = server.url.split(":")[2].split("/")[0]
        base = f"http://127.0.0.1:{port}"

        def status_of(url, headers=None):
            try:
                with urllib.request.urlopen(
                    urllib.request.Request(url, headers=headers or {}), timeout=10
                ) as r:
                    return r.status, r.headers
            except urllib.error.HTTPError as error:
                return error.code, error.headers

        assert status_of(f"{base}/api/meta")[0] == 401
        assert status_of(f"{base}/api/meta?token=wrong")[0] == 401
        status, headers = status_of(f"{base}/?token={token}")
        assert status == 200
        cookie = headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert status_of(f"{base}/api/meta", {"Cookie": cookie.split(";")[0]})[0] == 200


def test_everything_the_page_loads_is_served_by_distill_itself():
    folder = resources.files("distill.review").joinpath("static")
    for name in ("run.html", "eval.html", "common.js", "run.js", "eval.js", "review.css"):
        text = folder.joinpath(name).read_text(encoding="utf-8")
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.IGNORECASE), name
        assert "innerHTML" not in text and "eval(" not in text and "document.write" not in text, name
