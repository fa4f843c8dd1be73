"""`distill run` end to end on the bundled demo-tiny example, as a real process of the installed wheel started
in an empty directory: stopped with SIGTERM in the middle (after the generate stage, whose engine had handled
signals itself), resumed, completed, then run once more — every stage's outputs checked, nothing redone, nothing
written outside the run directory, and no server or child process left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import installed_environment

REPO = Path(__file__).resolve().parents[2]
STAGES = ("data", "generate", "references", "export", "train", "evaluate", "report")

pytestmark = pytest.mark.slow


def _distill_run(
    run_dir: Path,
    *,
    config: str | Path = "configs/demo-tiny.yaml",
    interrupt_at: str | None = None,
    signum: int = signal.SIGINT,
    timeout_s: float = 600,
    venv: Path | None = None,
) -> tuple[int, str]:
    """Run the command; with ``interrupt_at``, send ``signum`` to it as soon as that text is printed.

    With ``venv`` (an environment with the wheel installed), its ``distill`` runs from the run directory's
    parent, without PYTHONPATH; otherwise this checkout's, from the repository root.
    """
    if venv is None:
        command, cwd, env = [sys.executable, "-m", "distill"], REPO, dict(os.environ)
    else:
        command, cwd, env = [str(venv / "bin" / "distill")], run_dir.parent, installed_environment(venv)
    env["PYTHONUNBUFFERED"] = "1"
    command += ["run", str(config), "--output-dir", str(run_dir)]
    process = subprocess.Popen(
        command,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        env=env,
        start_new_session=True,
    )
    lines = []
    deadline = time.monotonic() + timeout_s
    try:
        for line in process.stdout:
            lines.append(line)
            if interrupt_at and interrupt_at in line:
                process.send_signal(signum)
                interrupt_at = None
            if time.monotonic() > deadline:
                raise TimeoutError("distill run took too long:\n" + "".join(lines[-40:]))
        code = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return code, "".join(lines)


def _markers(run_dir: Path) -> dict[str, dict]:
    found = {}
    for stage in STAGES:
        path = run_dir / "stages" / f"{stage}.json"
        if path.exists():
            found[stage] = json.loads(path.read_text(encoding="utf-8"))
    return found


def _no_server_left(output: str) -> None:
    """Every server the run said it started has let go of its port: its process was stopped."""
    import re
    import socket

    ports = {int(port) for port in re.findall(r"ready at http://127\.0\.0\.1:(\d+)", output)}
    assert ports, output
    for port in ports:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT leftovers are fine
            probe.bind(("127.0.0.1", port))
            probe.listen()  # fails if a server still listens there


def _no_process_left(run_dir: Path) -> None:
    """No process (the training child, a server) still runs with this run directory on its command line."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().decode(errors="replace")
        except OSError:
            continue  # it ended while we looked
        assert str(run_dir) not in args, f"still running: {args.replace(chr(0), ' ')}"


def test_distill_run_interrupted_resumed_and_reused(venv, tmp_path):
    run_dir = tmp_path / "empty" / "run"
    run_dir.parent.mkdir()
    tiny = {"config": "demo-tiny", "venv": venv}  # the bundled example, found by name by the installed wheel

    # 1. SIGTERM as training starts, after the engine's generate stage: the earlier stages are complete,
    #    training is not, and the servers and the training child were stopped on the way out.
    code, output = _distill_run(run_dir, interrupt_at="train: running", signum=signal.SIGTERM, **tiny)
    assert code == 130, output
    assert set(_markers(run_dir)) == {"data", "generate", "references", "export"}, output
    _no_server_left(output)
    _no_process_left(run_dir)

    # 2. Resume: the finished stages are reused, the rest runs to the end.
    code, output = _distill_run(run_dir, **tiny)
    assert code == 0, output
    for stage in ("data", "generate", "references", "export"):
        assert f"{stage}: already complete for this config" in output
    for stage in ("train", "evaluate", "report"):
        assert f"{stage}: done in" in output
    first = _markers(run_dir)
    assert set(first) == set(STAGES)
    _no_server_left(output)

    data = run_dir / "data"
    train_ids = {json.loads(line)["id"] for line in (data / "train.jsonl").read_text().splitlines()}
    eval_rows = [json.loads(line) for line in (data / "eval.jsonl").read_text().splitlines()]
    assert len(train_ids) == 8 and len(eval_rows) == 4
    assert not train_ids & {row["id"] for row in eval_rows}

    summary = json.loads((run_dir / "generate" / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["records"]["accepted"] == 8
    dataset = (run_dir / "dataset" / "contracts_alpaca.jsonl").read_text().splitlines()
    assert len(dataset) == 8 and json.loads(json.loads(dataset[0])["output"])["甲方"]

    adapter = Path(first["train"]["outputs"]["adapter"])
    assert (adapter / "adapter_config.json").is_file() and (adapter / "adapter_model.safetensors").is_file()

    report = json.loads((run_dir / "eval" / "report.json").read_text())
    systems = report["systems"]
    assert set(systems) == {"teacher", "distilled", "base"}
    assert systems["teacher"]["task"]["f1"] == 1.0  # the reference teacher is right by construction
    assert systems["teacher"]["judge"]["avg"] == 10.0
    for name in ("distilled", "base"):
        assert systems[name]["answered"] == 4 and systems[name]["task"]["f1"] is not None
    text = (run_dir / "report.md").read_text()
    assert "stands in for a strong API model" in text and "reference-based rubric" in text
    assert "| train |" in text and "field F1" in text
    # The ROI investment is the 8 teacher answers bought (× the teacher's cost per call), shown as arithmetic.
    roi = report["comparisons"]["distilled"]["roi"]
    assert roi["investment_parts"]["data"] == pytest.approx(8 * roi["teacher_cost_per_call"])
    assert "Investment = data 0.16 (8 teacher answers × 0.02 per call)" in text

    # 3. Everything is complete: a third run reuses every stage and starts no server.
    code, output = _distill_run(run_dir, **tiny)
    assert code == 0, output
    for stage in ("data", "generate", "references", "export", "train", "evaluate"):
        assert f"{stage}: already complete for this config" in output
    assert "starting the reference teacher" not in output
    again = _markers(run_dir)
    for stage in ("data", "generate", "references", "export", "train", "evaluate"):
        assert again[stage]["finished_at"] == first[stage]["finished_at"]
    assert "reused (complete for this config)" in (run_dir / "report.md").read_text()
    assert [path.name for path in run_dir.parent.iterdir()] == ["run"]  # nothing written outside it
