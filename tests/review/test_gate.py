"""`distill run` with review: required stops after generation and goes on, with approved records only."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from importlib import resources

import pytest
import yaml

from distill.review.decisions import APPROVE, REJECT, decisions_path, finish_entry, make_entry
from distill.review.gate import STOPPED_FOR_REVIEW, ReviewPending, require_review, review_key
from distill.review.log import AppendLog

from .helpers import small_run


def _log(run_dir, *entries):
    with AppendLog(decisions_path(run_dir), what="decisions") as log:
        for entry in entries:
            log.append(entry)


def test_the_gate_opens_only_when_finished_with_an_approval(tmp_path):
    small_run(tmp_path)
    with pytest.raises(ReviewPending, match=r"stopped for review \(0 approved so far\)"):
        require_review(tmp_path)
    _log(tmp_path, make_entry("c0", 0, REJECT, reviewer="ana"), finish_entry("ana"))
    with pytest.raises(ReviewPending, match="approves no record"):
        require_review(tmp_path)
    before = review_key(tmp_path)
    _log(tmp_path, make_entry("c1", 0, APPROVE, reviewer="ana"))
    require_review(tmp_path)
    assert review_key(tmp_path) != before


def test_distill_run_stops_for_review_and_goes_on_with_the_approved_records(tmp_path):
    config = yaml.safe_load(resources.files("distill.configs").joinpath("demo-tiny.yaml").read_text())
    config["review"] = "required"
    config_path = tmp_path / "run.yaml"
    config_path.write_text(yaml.safe_dump(config))
    out = tmp_path / "run"
    command = [sys.executable, "-m", "distill", "run", str(config_path), "--output-dir", str(out)]
    first = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert first.returncode == STOPPED_FOR_REVIEW, first.stdout + first.stderr
    assert "stopped for review" in first.stderr
    generated = out / "generate"
    assert (out / "stages" / "generate.json").exists() and not (out / "dataset").exists()

    accepted = [json.loads(line) for line in (generated / "accepted-00000.jsonl").read_text().splitlines()]
    chosen = accepted[:3]
    _log(generated, *[make_entry(r["id"], r["sample_index"], APPROVE, reviewer="ana") for r in chosen])
    done = subprocess.run(
        [sys.executable, "-m", "distill", "review", str(generated), "--finish"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr

    # Run again: export goes on with the approved records; stop it once export is done (training is not
    # what this test is about).
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    seen = []
    try:
        for line in process.stdout:
            seen.append(line)
            if "export: done" in line:
                break
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=120)
        process.stdout.close()
    assert any("generate: already complete" in line for line in seen), "".join(seen)
    rows = [
        json.loads(line) for line in (out / "dataset" / "contracts_alpaca.jsonl").read_text().splitlines()
    ]
    assert sorted((r["id"], r["sample_index"]) for r in rows) == sorted(
        (r["id"], r["sample_index"]) for r in chosen
    )
