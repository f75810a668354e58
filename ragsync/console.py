"""What a person sees: live progress bars per run, the summary table, search hits."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from ragsync.dead_letters import StoredLetter
from ragsync.oneshot import SyncReport
from ragsync.runs import RunState
from ragsync.store import Hit


class RunProgressBars:
    """One bar per run: items settled (in Qdrant or dead-lettered) of items fetched so far."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.fields[service]:<20}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]:<10} pages {task.fields[pages]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> RunProgressBars:
        self._progress.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._progress.stop()

    def update(self, run: RunState) -> None:
        """Redraw the run's bar."""
        task = self._tasks.get(run.run_id)
        if task is None:
            task = self._tasks[run.run_id] = self._progress.add_task(
                "", total=None, service=run.service, status=run.status, pages=0
            )
        total = run.items_fetched if run.fetch_done else max(run.items_fetched, 1) * 2
        self._progress.update(task, total=total, completed=run.items_settled, status=run.status, pages=run.pages)


SUMMARY_COLUMNS = (
    "service",
    "status",
    "pages",
    "fetched",
    "upserted",
    "skipped",
    "deleted",
    "dead-lettered",
    "seconds",
    "items/s",
)


def _summary_row(label: str, status: str, runs: list[RunState], seconds: float) -> list[str]:
    fetched = sum(r.items_fetched for r in runs)
    counts = [
        sum(r.pages for r in runs),
        fetched,
        sum(r.items_upserted for r in runs),
        sum(r.items_skipped for r in runs),
        sum(r.deleted for r in runs),
        sum(r.dead_lettered for r in runs),
    ]
    rate = fetched / seconds if seconds else 0.0
    return [label, status, *map(str, counts), f"{seconds:.1f}", f"{rate:.0f}"]


def summary_table(report: SyncReport) -> Table:
    """Per service: pages, items fetched / upserted / skipped as unchanged / deleted / dead-lettered, time, rate."""
    table = Table(title=f"sync finished in {report.seconds:.1f}s; {report.points_in_collection} points in Qdrant")
    for column in SUMMARY_COLUMNS:
        table.add_column(column, justify="left" if column in ("service", "status") else "right")
    for run in report.runs:
        status = run.status if run.status != "failed" else f"[red]failed[/red]: {run.error}"
        table.add_row(*_summary_row(run.service, status, [run], run.seconds))
    table.add_row(*_summary_row("[bold]all", "", report.runs, report.seconds))
    return table


def runs_table(runs: list[RunState]) -> Table:
    """The runs, newest first: status, progress, errors."""
    table = Table(title=f"{len(runs)} sync runs")
    for column in (
        "run",
        "tenant",
        "service",
        "type",
        "status",
        "pages",
        "fetched",
        "upserted",
        "dead",
        "pending",
        "started",
        "error",
    ):
        table.add_column(column, overflow="fold")
    colours = {"succeeded": "green", "failed": "red", "stalled": "yellow", "skipped": "magenta"}
    for run in runs:
        colour = colours.get(run.status, "cyan")
        table.add_row(
            run.run_id[:12],
            run.tenant_id,
            run.service,
            run.request.sync_type if run.request else "",
            f"[{colour}]{run.status}[/{colour}]",
            str(run.pages),
            str(run.items_fetched),
            str(run.items_upserted),
            str(run.dead_lettered),
            str(run.items_pending),
            run.started_at.strftime("%Y-%m-%d %H:%M:%S") if run.started_at else "",
            run.error or "",
        )
    return table


def letters_table(letters: list[StoredLetter]) -> Table:
    """Dead letters: where, which run and item, why."""
    table = Table(title=f"{len(letters)} dead letters")
    for column in ("ref", "at", "stage", "service", "run", "item", "reason"):
        table.add_column(column, overflow="fold")
    for stored in letters:
        letter = stored.letter
        table.add_row(
            stored.ref,
            letter.at.strftime("%Y-%m-%d %H:%M:%S"),
            letter.stage,
            letter.service or "",
            (letter.run_id or "")[:12],
            letter.item_id or "",
            letter.reason,
        )
    return table


def hits_table(query: str, hits: list[Hit]) -> Table:
    """Search results: score, service, item id, the start of the text."""
    table = Table(title=f"top {len(hits)} for {query!r}")
    for column in ("score", "service", "tenant", "item", "text"):
        table.add_column(column)
    for hit in hits:
        text = str(hit.payload.get("text", "")).replace("\n", " | ")
        table.add_row(
            f"{hit.score:.3f}",
            str(hit.payload.get("service")),
            str(hit.payload.get("tenant_id")),
            str(hit.payload.get("item_id")),
            text[:90],
        )
    return table
