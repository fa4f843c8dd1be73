"""`distill run` on a user's own task — a JSONL file this test writes, not data the project generates — end to
end as a real process: teacher, a tiny training run, the evaluator and the report.

With an answer schema (the reference teacher answering from the file's known answers): stopped with Ctrl-C
after generation, resumed, then run again with every stage reused; the report scores by the schema and names
the task's files and fingerprints. Without a schema (the fake teacher over HTTP, no references in the file):
the teacher's answers become the held-out references, the students are scored by exact match and the judge,
and the report says where the references came from.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from distill.pipeline.task_data import fingerprint, in_eval_split
from tests.engine.conftest import fake_teacher_process
from tests.pipeline.test_run import _distill_run, _markers, _no_process_left, _no_server_left

pytestmark = pytest.mark.slow

COLOURS = ["red", "blue", "green", "black", "white", "silver"]
PRODUCTS = ["kettle", "desk lamp", "backpack", "headphones", "blender", "office chair", "umbrella", "mug"]
SCHEMA = {
    "type": "object",
    "properties": {
        "product": {"type": "string"},
        "colour": {"type": "string"},
        "price": {"type": "number"},
        "in_stock": {"type": "boolean"},
    },
    "required": ["product", "colour", "price", "in_stock"],
    "additionalProperties": False,
}
TINY = {
    "generate": {"max_tokens": 200, "teacher": {"concurrency": 8}, "filters": {"min_output_chars": 10}},
    "train": {
        "lora_rank": 8,
        "lora_alpha": 16,
        "learning_rate": 1.0e-3,
        "epochs": 1,
        "max_steps": 2,
        "per_device_batch_size": 4,
        "gradient_accumulation_steps": 1,
        "val_size": 0,
    },
    # The transformers backend: no vLLM start for a handful of items (the demo-tiny run covers vLLM).
    "evaluate": {
        "generation": {"backend": "transformers", "max_new_tokens": 40},
        "latency": {"enabled": False},
    },
}


def _listings(n: int, with_answers: bool) -> list[dict]:
    rows = []
    for i in range(n):
        product, colour = PRODUCTS[i % len(PRODUCTS)], COLOURS[(i * 5) % len(COLOURS)]
        price, stock = 10 + 3 * i + 0.99, i % 3 != 0
        text = f"Listing #{i}: a {colour} {product}, now {price} EUR. " + (
            "Ships tomorrow." if stock else "Currently sold out, back next month."
        )
        row = {"sku": f"SKU-{1000 + i}", "listing": text}
        if with_answers:
            row["expected"] = {"product": product, "colour": colour, "price": price, "in_stock": stock}
        rows.append(row)
    return rows


def _write_task(work: Path, *, schema: bool, teacher: dict, rows: list[dict]) -> Path:
    work.mkdir(parents=True, exist_ok=True)
    (work / "listings.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    task = {
        "kind": "file",
        "name": "listings",
        "inputs": "listings.jsonl",
        "id_field": "sku",
        "input_field": "listing",
        "reference_field": "expected",
        "instruction": "Extract the product, its colour, its price in EUR and whether it is in stock, as JSON.",
        "eval_split": 0.25,
    }
    if schema:
        (work / "schema.json").write_text(json.dumps(SCHEMA, indent=2), encoding="utf-8")
        task["answer_schema"] = "schema.json"
    config = {"task": task, "teacher": teacher, "judge": {"kind": "reference"}, **TINY}
    path = work / "task.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def test_a_structured_task_with_a_schema_runs_resumes_and_is_reused(tmp_path):
    rows = _listings(20, with_answers=True)
    config = _write_task(
        tmp_path / "task",
        schema=True,
        teacher={"kind": "reference", "latency_ms": 20, "latency_spread_ms": 5, "stream_ms_per_token": 1},
        rows=rows,
    )
    run_dir = tmp_path / "run"
    held_out = [r["sku"] for r in rows if in_eval_split(r["sku"], 0.25)]
    assert 0 < len(held_out) < 20  # the test's data really has both sides

    # 1. Ctrl-C as training starts: data, generate, references and export are complete; nothing left running.
    code, output = _distill_run(run_dir, config=config, interrupt_at="train: running")
    assert code == 130, output
    assert set(_markers(run_dir)) == {"data", "generate", "references", "export"}, output
    _no_server_left(output)
    _no_process_left(run_dir)

    # 2. Resume: the finished stages are reused, the rest runs.
    code, output = _distill_run(run_dir, config=config)
    assert code == 0, output
    for stage in ("data", "generate", "references", "export"):
        assert f"{stage}: already complete for this config" in output
    first = _markers(run_dir)

    train_ids = [
        json.loads(line)["id"] for line in (run_dir / "data" / "train.jsonl").read_text().splitlines()
    ]
    eval_rows = [json.loads(line) for line in (run_dir / "data" / "eval.jsonl").read_text().splitlines()]
    assert sorted(row["id"] for row in eval_rows) == sorted(held_out) and not set(train_ids) & set(held_out)
    assert eval_rows[0]["reference"] == next(r["expected"] for r in rows if r["sku"] == eval_rows[0]["id"])
    dataset = (run_dir / "dataset" / "listings_alpaca.jsonl").read_text().splitlines()
    assert len(dataset) == len(train_ids) and json.loads(json.loads(dataset[0])["output"])["product"]

    report = json.loads((run_dir / "eval" / "report.json").read_text())
    assert report["scoring"] == "answer schema" and report["fields"] == list(SCHEMA["properties"])
    teacher = report["systems"]["teacher"]["task"]
    assert teacher["f1"] == 1.0 and teacher["format_compliance"] == 1.0  # it answers from the known answers
    for name in ("distilled", "base"):
        assert report["systems"][name]["answered"] == len(held_out)
        assert report["systems"][name]["task"]["format_compliance"] is not None
    text = (run_dir / "report.md").read_text()
    assert "# distill run report: listings" in text
    assert "format compliance: valid JSON satisfying the schema" in text and "field F1" in text
    assert f"sha256 {fingerprint(config.parent / 'listings.jsonl')}" in text
    assert f"sha256 {fingerprint(config.parent / 'schema.json')}" in text
    assert (
        "References of the held-out set: the `expected` field of the held-out rows of the inputs file" in text
    )
    assert "Investment = data" in text

    # 3. Everything is complete: reused, no server started.
    started = time.monotonic()
    code, output = _distill_run(run_dir, config=config)
    assert code == 0, output
    assert time.monotonic() - started < 60
    assert "starting the reference teacher" not in output
    again = _markers(run_dir)
    for stage in ("data", "generate", "references", "export", "train", "evaluate"):
        assert again[stage]["finished_at"] == first[stage]["finished_at"]

    # 4. The user edits the inputs file: its fingerprint changes, so every stage reruns from the data.
    rows[0]["listing"] += " Limited edition."
    (config.parent / "listings.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8"
    )
    code, output = _distill_run(run_dir, config=config, interrupt_at="export: running")
    assert "data: running" in output and "generate: running" in output


def test_a_free_text_task_without_references_takes_the_teachers_answers(tmp_path):
    rows = _listings(16, with_answers=False)
    with fake_teacher_process(latency_ms=5) as fake:
        endpoint = {"base_url": fake.base_url + "/v1", "model": "fake-teacher", "api_key_env": None}
        teacher = {"kind": "api", "endpoint": endpoint}
        config = _write_task(tmp_path / "task", schema=False, teacher=teacher, rows=rows)
        run_dir = tmp_path / "run"
        code, output = _distill_run(run_dir, config=config)
    assert code == 0, output
    _no_server_left(output)

    held_out = sorted(r["sku"] for r in rows if in_eval_split(r["sku"], 0.25))
    references = [
        json.loads(line) for line in (run_dir / "references" / "eval.jsonl").read_text().splitlines()
    ]
    assert sorted(row["id"] for row in references) == held_out
    # The fake teacher's final answers, as it wrote them.
    assert all(row["reference"].startswith(("Putting it together", "Result:", "Done:")) for row in references)
    report = json.loads((run_dir / "eval" / "report.json").read_text())
    assert report["scoring"] == "exact match" and report["fields"] is None
    for name in ("teacher", "distilled", "base"):
        assert report["systems"][name]["task"]["exact_match"] is not None
        assert report["systems"][name]["judge"]["scored"] > 0  # the reference rubric scored the text
    text = (run_dir / "report.md").read_text()
    assert "exact match" in text and "field F1" not in text
    assert "**the teacher's own answers** (the task gives none)" in text
    assert f"{len(held_out)} of {len(held_out)} held-out inputs got a usable answer" in text
