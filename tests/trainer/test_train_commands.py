"""`distill train` from the command line: help without torch, errors as `distill: error:` with exit 2."""

from __future__ import annotations

import subprocess
import sys


def _distill(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "distill", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def test_help_lists_the_flags_without_importing_torch():
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\nfrom distill.cli import main\ntry:\n main(['train', "
            "'--help'])\nexcept SystemExit: pass\nprint('torch' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "--deepspeed" in done.stdout and "--nproc" in done.stdout and "--resume" in done.stdout
    assert done.stdout.strip().endswith("False")


def test_bad_data_is_a_clean_error(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "c1", "sample_index": 0, "instruction": "x"}\n')
    done = _distill("train", "--data", str(bad), "--output-dir", str(tmp_path / "out"))
    assert done.returncode == 2
    assert f"distill: error: {bad}:1: output: missing field" in done.stderr
    assert "Traceback" not in done.stderr


def test_cli_trains_the_tiny_model(records, tiny_model, tmp_path):
    data = records(tmp_path / "records.jsonl", 8)
    done = _distill(
        "train",
        "--data",
        str(data),
        "--base-model",
        str(tiny_model),
        "--output-dir",
        str(tmp_path / "o"),
        "--epochs",
        "1",
        "--per-device-batch-size",
        "2",
        "--gradient-accumulation-steps",
        "2",
        "--val-size",
        "0",
        "--max-length",
        "256",
        "--token-budget",
        "512",
        "--no-packing",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(str(tmp_path / "o" / "adapter"))
    assert (tmp_path / "o" / "adapter" / "distill_manifest.json").is_file()
