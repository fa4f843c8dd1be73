"""`distill generate --dry-run`: validates, prints what it would send and cost, and sends nothing."""

from __future__ import annotations

import json
import subprocess
import sys

from distill.engine.runner import run_generation

from tests.engine.test_runner import make_config


def _dry_run(config_path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "distill", "generate", "--config", str(config_path), "--dry-run", *flags],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_dry_run_sends_nothing_writes_nothing_and_prices_the_run(tmp_path, fake_teacher):
    with fake_teacher(latency_ms=1) as teacher:
        config = make_config(tmp_path, teacher.base_url, rows=30, samples_per_input=2, max_tokens=100)
        config_path = tmp_path / "generate.yaml"
        data = json.loads(config.model_dump_json())
        data["teacher"]["price"] = {"input_per_million": 1.0, "output_per_million": 4.0}
        config_path.write_text(json.dumps(data))  # JSON is YAML
        done = _dry_run(config_path)
        assert done.returncode == 0, done.stderr
        plan = json.loads(done.stdout)
        assert teacher.stats()["total"] == 0  # not a single request, not even GET /models
        assert not config.output_dir.exists()
        assert plan["requests"] == {"total": 60, "already_done": 0, "to_send": 60}
        assert (
            plan["first_requests"][1]["request_id"] == "c0#1"
            and plan["first_requests"][1]["temperature"] == 0.8
        )
        prompt, completion = plan["tokens"]["prompt"], plan["tokens"]["completion"]
        assert 0 < prompt["low"] < prompt["high"] and completion["high"] == 60 * 100
        cost = plan["cost"]
        assert cost["online"]["low"] < cost["online"]["high"]
        assert cost["online"]["high"] == round((prompt["high"] * 1.0 + 6000 * 4.0) / 1e6, 6)
        assert cost["batch"]["high"] < cost["online"]["high"]

        # After a real run of part of it, a dry run counts only what is left, and the answers seen so far.
        partial = make_config(tmp_path, teacher.base_url, rows=30, samples_per_input=1, max_tokens=100)
        run_generation(partial, progress=False, force=True)
        teacher.reset_stats()
        done = _dry_run(config_path, "--force")
        plan = json.loads(done.stdout)
        assert teacher.stats()["total"] == 0
        assert plan["requests"]["already_done"] == 30 and plan["requests"]["to_send"] == 30
        assert plan["tokens"]["completion"]["expected_per_answer_from_earlier_runs"] > 0
        assert any("samples_per_input" in note for note in plan["notes"])


def test_dry_run_still_refuses_bad_input(tmp_path, fake_teacher_thread):
    teacher = fake_teacher_thread()
    config = make_config(tmp_path, teacher.base_url, rows=3)
    config.input.write_text('{"id": "a", "input": "x"}\n{"id": "a", "input": "y"}\n')
    config_path = tmp_path / "generate.yaml"
    config_path.write_text(config.model_dump_json())
    done = _dry_run(config_path)
    assert done.returncode == 2 and "in.jsonl:2: id: duplicate id 'a'" in done.stderr
    assert teacher.stats()["total"] == 0
