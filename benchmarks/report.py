"""The benchmark's output: rows, the printed table, the JSON report and the chart."""

from __future__ import annotations

import json
import os
import platform
import statistics
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


@dataclass
class Row:
    """One line of the table."""

    benchmark: str
    corpus: str
    items: int
    seconds: float
    rate: float
    versus: str = ""
    goal: str = ""
    met: bool | None = None
    runs: tuple[float, ...] = ()  # the seconds of each repeat, where `seconds` is the best of them


class Rows(list[Row]):
    """The table's rows, each printed on a line of its own as it is added: a step that fails late in a long run
    leaves every row before it on the screen (and in the results, see `benchmarks.run`)."""

    def append(self, row: Row) -> None:
        super().append(row)
        rate = f"{row.rate:.1f}/s" if row.rate else ""
        print(
            f"row: {row.benchmark} | {row.corpus} | {row.items} | {row.seconds:.2f} s | {rate} | {row.versus}",
            flush=True,
        )

    def extend(self, rows: Iterable[Row]) -> None:
        for row in rows:
            self.append(row)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "node": platform.node(),
        "processor": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
    }


def print_table(rows: list[Row], console: Console) -> None:
    """The table, with the goals met in green and the others in red."""
    about = machine()
    table = Table(title=f"ragsync benchmark on {about['node']} ({about['processor']}, {about['cores']} cores)")
    for column in ("benchmark", "corpus", "items", "seconds", "items/s", "compared", "goal", "met"):
        table.add_column(column, justify="right" if column in ("items", "seconds", "items/s") else "left")
    for row in rows:
        met = "" if row.met is None else ("[green]yes[/green]" if row.met else "[red]no[/red]")
        table.add_row(
            row.benchmark,
            row.corpus,
            str(row.items),
            f"{row.seconds:.2f}",
            f"{row.rate:.1f}" if row.rate else "",
            row.versus,
            row.goal,
            met,
        )
    console.print(table)


# Rows compared with the last full run, by how their names start: the figures that must not get slower.
WATCHED = ("first sync: Coordinator", "one-shot:", "unchanged re-sync", "change to searchable", "shapes:", "scale:")
# A whole sync or command timed twice in a row here differs by up to this much: a change within it is noise.
SPREAD = 0.10


@dataclass(frozen=True)
class Change:
    """A watched row of this run beside the same row (name, corpus, items) of the last run: the medians of their
    repeats where both have them, else their seconds. The best of five sub-second re-syncs is one lucky run: measured
    0.22 s (its five 0.22-0.38 s, median 0.35), then 0.25 s (0.25-0.60 s, median 0.31) with no change in between."""

    row: Row
    before_s: float
    before_runs: tuple[float, ...] = ()

    @property
    def by_median(self) -> bool:
        """Whether both rows carry their repeats, so their medians are compared."""
        return len(self.row.runs) >= 3 and len(self.before_runs) >= 3

    @property
    def this_s(self) -> float:
        """This run's figure as compared."""
        return statistics.median(self.row.runs) if self.by_median else self.row.seconds

    @property
    def last_s(self) -> float:
        """The last run's figure as compared."""
        return statistics.median(self.before_runs) if self.by_median else self.before_s

    @property
    def ratio(self) -> float:
        """This run's seconds over the last run's: above 1 is slower."""
        return self.this_s / self.last_s

    @property
    def verdict(self) -> str:
        if self.ratio > 1 + SPREAD:
            return "slower"
        return "faster" if self.ratio < 1 - SPREAD else "within the spread"


def changes(rows: list[Row], last_run: Path) -> list[Change]:
    """Each watched row of `rows` that the report at `last_run` (a `write` JSON) also has, with both timed."""
    if not last_run.exists():
        return []
    before = {(r["benchmark"], r["corpus"], r["items"]): r for r in json.loads(last_run.read_text())["rows"]}
    found = []
    for row in rows:
        last = before.get((row.benchmark, row.corpus, row.items), {})
        seconds = last.get("seconds", 0.0)
        if row.benchmark.startswith(WATCHED) and seconds > 0 and row.seconds > 0:
            found.append(Change(row, seconds, tuple(last.get("runs") or ())))
    return found


def print_changes(found: list[Change], console: Console) -> None:
    """The watched rows against the last run, slower ones in red."""
    table = Table(title=f"against the last full run (benchmarks/results/latest.json; spread ±{SPREAD:.0%})")
    for column in ("benchmark", "corpus", "items", "compared", "last run s", "this run s", "change", "verdict"):
        table.add_column(column, justify="right" if column.endswith(("s", "items", "change")) else "left")
    for change in found:
        colour = "red" if change.verdict == "slower" else "green"
        row = change.row
        table.add_row(
            row.benchmark,
            row.corpus,
            str(row.items),
            f"median of {len(row.runs)}" if change.by_median else "as shown",
            f"{change.last_s:.2f}",
            f"{change.this_s:.2f}",
            f"{change.ratio - 1:+.0%}",
            f"[{colour}]{change.verdict}[/{colour}]",
        )
    console.print(table)


def write(rows: list[Row], arguments: dict[str, Any], folder: Path, name: str) -> None:
    """`name`.json (every row and the machine) and `name`.png (the throughputs) in `folder`."""
    folder.mkdir(exist_ok=True)
    report = {"machine": machine(), "arguments": arguments, "rows": [asdict(r) for r in rows]}
    (folder / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    chart(rows, folder / f"{name}.png")


def chart(rows: list[Row], path: Path) -> None:
    """A bar per throughput row, on a log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rated = [r for r in rows if r.rate and not r.benchmark.startswith("store")]
    figure, axis = plt.subplots(figsize=(11, 6))
    axis.barh([f"{r.benchmark} ({r.corpus})" for r in rated], [r.rate for r in rated], color="#4477aa")
    axis.invert_yaxis()
    axis.set_xlabel("items per second")
    axis.set_xscale("log")
    axis.set_title("ragsync throughput vs the raw model (same machine, same run)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
