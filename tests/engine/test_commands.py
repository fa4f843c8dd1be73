"""`distill generate` and `distill export` as a user types them: flags, config files, errors, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from distill.cli import main


def write_lines(path, lines):
    path.write_text("".join(lines), encoding="utf-8")
    return path


def generate_args(tmp_path, inputs, base_url="http://127.0.0.1:9/v1", *extra):
    return [
        "generate",
        "--input",
        str(inputs),
        "--output-dir",
        str(tmp_path / "run"),
        "--base-url",
        base_url,
        "--model",
        "fake-teacher",
        "--api-key-env",
        "DISTILL_NO_SUCH_KEY",
        "--no-progress",
        *extra,
    ]


def test_generate_help_answers_with_examples(capsys):
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    text = capsys.readouterr().out
    for flag in (
        "--input",
        "--output-dir",
        "--base-url",
        "--model",
        "--samples-per-input",
        "--concurrency",
        "--rpm",
        "--tpm",
        "--max-tokens",
        "--api-key-env",
        "--template",
        "--task",
        "--budget",
        "--force",
        "--config",
    ):
        assert flag in text
    assert "examples:" in text and "resumes where it stopped" in text


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"id": "a", "input": "x"}\n', '{"id": "b", "input": \n'], r"in.jsonl:2: (line): malformed JSON"),
        (['{"id": "a", "question": "x"}\n'], "in.jsonl:1: input: missing field"),
        ([], "in.jsonl: input file has no rows"),
    ],
)
def test_bad_input_fails_before_any_request(tmp_path, capsys, lines, message):
    inputs = write_lines(tmp_path / "in.jsonl", lines)
    assert main(generate_args(tmp_path, inputs)) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_bad_config_key_names_file_line_and_key(tmp_path, capsys):
    config = write_lines(
        tmp_path / "generate.yaml", ["input: in.jsonl\n", "model: m\n", "filtres:\n", "  dedupe: false\n"]
    )
    assert main(["generate", "--config", str(config), "--output-dir", str(tmp_path / "run")]) == 2
    assert f"{config}:3: filtres: unknown key" in capsys.readouterr().err


def test_missing_key_for_a_remote_teacher(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DISTILL_NO_SUCH_KEY", raising=False)
    inputs = write_lines(tmp_path / "in.jsonl", ['{"id": "a", "input": "x"}\n'])
    assert main(generate_args(tmp_path, inputs, "https://api.example.com/v1")) == 2
    assert "environment variable DISTILL_NO_SUCH_KEY is not set" in capsys.readouterr().err


def test_generate_then_export_from_the_shell(tmp_path, fake_teacher):
    inputs = write_lines(
        tmp_path / "in.jsonl",
        [
            json.dumps({"id": f"r{i}", "input": f"Contract {i}: Acme sells {i} widgets to Globex."}) + "\n"
            for i in range(20)
        ],
    )
    config = write_lines(
        tmp_path / "generate.yaml",
        [
            "template: en\n",
            "task: Extract the parties.\n",
            "samples_per_input: 3\n",
            "teacher:\n",
            "  concurrency: 8\n",
        ],
    )
    with fake_teacher(latency_ms=5) as teacher:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "distill",
                *generate_args(
                    tmp_path,
                    inputs,
                    teacher.base_url + "/v1",
                    "--config",
                    str(config),
                    "--samples-per-input",
                    "2",
                ),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["status"] == "complete" and summary["total"] == 40  # the flag beat the file's 3
    exported = subprocess.run(
        [
            sys.executable,
            "-m",
            "distill",
            "export",
            "--run-dir",
            str(tmp_path / "run"),
            "--out-dir",
            str(tmp_path / "data"),
            "--format",
            "sharegpt",
            "--with-thinking",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert exported.returncode == 0, exported.stderr
    result = json.loads(exported.stdout)
    assert result["rows"] == summary["records"]["accepted"] > 0
    first = json.loads((tmp_path / "data" / "run_sharegpt.jsonl").read_text().splitlines()[0])
    assert first["conversations"][0]["value"].startswith("Extract the parties.\n\nContract ")
    assert first["conversations"][1]["value"].startswith("【思考】")
