"""EMBEDDING_PROCESS=auto's rule: the model moves to a process of its own only while it is at most MOVE_AT times
the rest of the batch, and only with two cores or more."""

from __future__ import annotations

import pytest

from ragsync.model.placement import MOVE_AT, decide


def test_a_model_of_the_size_of_the_rest_moves_to_a_process_of_its_own() -> None:
    placement = decide(model_s=0.2, rest_s=0.5, texts=2000, cores=2)  # 100 µs a text against 250
    assert placement.where == "its own process"
    assert placement.model_us == pytest.approx(100.0) and placement.rest_us == pytest.approx(250.0)
    assert "the model 100 µs of CPU a text, the rest 250 µs" in placement.reason


def test_a_model_that_is_most_of_the_time_stays() -> None:
    # all-MiniLM-L6-v2 on a CPU: about 30 times the rest
    placement = decide(model_s=30.0, rest_s=1.0, texts=2000, cores=16)
    assert placement.where == "this process"
    assert f"above {MOVE_AT:g} times the rest" in placement.reason


def test_the_bound_itself_still_moves_and_just_above_it_stays() -> None:
    assert decide(MOVE_AT, 1.0, 1000, 2).where == "its own process"
    assert decide(MOVE_AT * 1.01, 1.0, 1000, 2).where == "this process"


def test_one_core_keeps_the_model_whatever_its_speed() -> None:
    placement = decide(model_s=0.1, rest_s=1.0, texts=2000, cores=1)
    assert placement.where == "this process" and placement.reason.startswith("one core")


def test_a_rest_measured_below_zero_counts_as_none() -> None:
    # The process clock and the model thread's are read at different moments: a model alone can come out ahead.
    placement = decide(model_s=1.0, rest_s=-0.01, texts=100, cores=2)
    assert placement.rest_us == 0.0 and placement.where == "this process"
