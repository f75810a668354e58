"""The benchmark's rows survive a failing step (each is printed when it is made, and the steps after go on), and
the watched ones are set beside the last run's."""

from __future__ import annotations

import asyncio
import io
import json
from dataclasses import asdict
from pathlib import Path

import pytest
from rich.console import Console

from benchmarks.report import Row, Rows, changes, print_changes
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


def test_watched_rows_are_set_beside_the_last_run_and_a_slowdown_past_the_spread_is_called_slower(
    tmp_path: Path,
) -> None:
    last = [
        Row("first sync: Coordinator to Qdrant", "short", 1000, 10.0, 100.0),
        Row("one-shot: ragsync sync, whole command", "short", 1000, 13.0, 76.0),
        Row("unchanged re-sync", "short", 1000, 0.30, 3300.0),
        Row("model: torch bf16", "short", 1000, 3.4, 291.0),  # not watched
    ]
    write_rows(last, tmp_path / "latest.json")
    now = [
        Row("first sync: Coordinator to Qdrant", "short", 1000, 10.5, 95.0),  # +5 %: noise
        Row("one-shot: ragsync sync, whole command", "short", 1000, 15.0, 66.0),  # +15 %: slower
        Row("unchanged re-sync", "short", 1000, 0.20, 5000.0),  # -33 %: faster
        Row("unchanged re-sync", "long", 300, 0.2, 1500.0),  # not in the last run
        Row("model: torch bf16", "short", 1000, 9.0, 111.0),
    ]
    found = changes(now, tmp_path / "latest.json")
    assert [(c.row.benchmark, c.verdict) for c in found] == [
        ("first sync: Coordinator to Qdrant", "within the spread"),
        ("one-shot: ragsync sync, whole command", "slower"),
        ("unchanged re-sync", "faster"),
    ]
    output = io.StringIO()
    print_changes(found, Console(file=output, width=200))
    assert "+15%" in output.getvalue() and "slower" in output.getvalue()
    assert changes(now, tmp_path / "missing.json") == []


def test_rows_with_their_repeats_are_compared_by_median_not_by_their_luckiest_run(tmp_path: Path) -> None:
    last = [
        Row("unchanged re-sync", "long", 300, 0.22, 1364.0, runs=(0.22, 0.26, 0.36, 0.38, 0.35)),
        Row("unchanged re-sync", "short", 1000, 0.30, 3333.0, runs=(0.30, 0.36, 0.36, 0.42, 0.38)),
        Row("first sync: Coordinator to Qdrant", "short", 1000, 6.6, 151.0),  # written before repeats were kept
    ]
    write_rows(last, tmp_path / "latest.json")
    now = [
        Row("unchanged re-sync", "long", 300, 0.25, 1200.0, runs=(0.29, 0.59, 0.31, 0.25, 0.31)),
        Row("unchanged re-sync", "short", 1000, 0.33, 3030.0, runs=(0.33, 0.45, 0.44, 0.46, 0.47)),
        Row("first sync: Coordinator to Qdrant", "short", 1000, 7.5, 133.0, runs=(7.5, 7.6, 7.7)),
    ]
    found = changes(now, tmp_path / "latest.json")
    assert [(c.by_median, round(c.last_s, 2), round(c.this_s, 2), c.verdict) for c in found] == [
        (True, 0.35, 0.31, "faster"),  # its best alone: 0.22 → 0.25, +14 %, "slower"
        (True, 0.36, 0.45, "slower"),
        (False, 6.6, 7.5, "slower"),
    ]
    output = io.StringIO()
    print_changes(found, Console(file=output, width=200))
    assert "median of 5" in output.getvalue() and "as shown" in output.getvalue()


def write_rows(rows: list[Row], path: Path) -> None:
    path.write_text(json.dumps({"rows": [asdict(row) for row in rows]}))
