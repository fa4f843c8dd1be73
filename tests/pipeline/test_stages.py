"""Stage markers: a stage is reused only for the same key with its outputs present; a started stage has none."""

from __future__ import annotations

from distill.pipeline.markers import StageBook, claim_output_dir, stage_key


def test_key_ignores_dict_order_and_sees_every_value():
    assert stage_key("x", {"a": 1, "b": [1, 2]}) == stage_key("x", {"b": [1, 2], "a": 1})
    assert stage_key("x", {"a": 1}) != stage_key("x", {"a": 2})
    assert stage_key("x", "upstream-1") != stage_key("x", "upstream-2")


def test_completed_needs_same_key_and_existing_outputs(tmp_path):
    book = StageBook(tmp_path)
    output = tmp_path / "out.txt"
    output.write_text("done")
    started = book.start("train")
    book.finish("train", "k1", started, {"file": output}, {"steps": 3})
    record = book.completed("train", "k1")
    assert record is not None and record.skipped and record.details == {"steps": 3}
    assert book.completed("train", "k2") is None
    output.unlink()
    assert book.completed("train", "k1") is None


def test_starting_a_stage_forgets_its_old_completion(tmp_path):
    book = StageBook(tmp_path)
    book.finish("generate", "k", book.start("generate"), {}, {})
    assert book.completed("generate", "k") is not None
    book.start("generate")  # a run that dies now must not look complete next time
    assert book.completed("generate", "k") is None


def test_claimed_directory_keeps_own_partial_work_and_drops_others(tmp_path):
    out = tmp_path / "train"
    claim_output_dir(out, "k1")
    assert not out.exists() or not any(out.iterdir())  # nothing of the pipeline's inside the tools' directory
    out.mkdir()
    (out / "checkpoint").write_text("step 5")
    claim_output_dir(out, "k1")
    assert (out / "checkpoint").read_text() == "step 5"
    claim_output_dir(out, "k2")
    assert not (out / "checkpoint").exists()
