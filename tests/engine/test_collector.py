"""The run's garbage-collector settings hold for the run only: a caller (the pipeline, a notebook) gets
Python's settings back as it had them, after a normal end and after an error."""

from __future__ import annotations

import gc

import pytest
from distill.engine.collector import YOUNG_THRESHOLD, fewer_collections


def test_fewer_collections_inside_and_the_old_settings_after():
    before = gc.get_threshold()
    with fewer_collections():
        assert gc.get_threshold() == (max(before[0], YOUNG_THRESHOLD), *before[1:])
        assert gc.get_freeze_count() > 0  # what existed on entry is left out of collections
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_settings_come_back_after_an_error():
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), fewer_collections():
        raise RuntimeError("a failed run")
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_a_callers_own_freeze_is_left_alone():
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with fewer_collections():
            pass
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()
