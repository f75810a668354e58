"""The benchmark's rows survive a failing step: each is printed when it is made, and the steps after go on."""

from __future__ import annotations

import asyncio
import io

import pytest
from rich.console import Console

from benchmarks.report import Row, Rows
from benchmarks.run import _step


def test_each_row_is_printed_as_it_is_added(capsys: pytest.CaptureFixture[str]) -> None:
    rows = Rows()
    rows.append(Row("first", "short", 10, 2.0, 5.0, "0.50 of the encoder"))
    assert "row: first | short | 10 | 2.00 s | 5.0/s | 0.50 of the encoder" in capsys.readouterr().out
    rows.extend([Row("second", "long", 3, 1.0, 0.0)])
    assert "row: second | long | 3 | 1.00 s |  | " in capsys.readouterr().out
    assert [row.benchmark for row in rows] == ["first", "second"]


def test_a_failing_step_keeps_the_rows_it_made_and_says_why_in_one_line() -> None:
    rows = Rows()
    output = io.StringIO()

    async def failing() -> None:
        rows.append(Row("made before the failure", "short", 1, 1.0, 1.0))
        raise RuntimeError("the store-alone measurement failed")

    async def fine() -> None:
        rows.append(Row("made after", "short", 1, 1.0, 1.0))

    async def both() -> list[bool]:
        console = Console(file=output, width=200)
        return [await _step("shapes", failing, console), await _step("oneshot", fine, console)]

    assert asyncio.run(both()) == [False, True]
    assert [row.benchmark for row in rows] == ["made before the failure", "made after"]
    assert "step shapes failed: RuntimeError: the store-alone measurement failed" in output.getvalue()
