"""What a person sees: live progress bars per run, the summary table, search hits.

Every cell, title and line built from data (record text, ids, tenants, service names, errors, reasons) is a rich
`Text` made by `ragsync.shown.as_text`: never parsed as markup, its control characters shown as escapes. Only the
tables' own styling (a status colour, the bold total) is a style.
"""

from __future__ import annotations

from types import TracebackType

from rich import box
from rich.console import Console, Group, JustifyMethod
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from ragsync.messaging.dead_letters import StoredLetter
from ragsync.runstate.runs import RunState, SyncReport
from ragsync.shown import as_text, shown
from ragsync.store import Hit
from ragsync.store.related_edges import RelatedItem


class RunProgressBars:
    """One bar per run: items settled (in Qdrant or dead-lettered) of items fetched so far."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            # The fields are data: formatted as plain text, never read as markup.
            TextColumn("{task.fields[service]:<20}", style="bold", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]:<10} pages {task.fields[pages]}", markup=False),
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
                "", total=None, service=shown(run.service), status=shown(run.status), pages=0
            )
        total = run.items_fetched if run.fetch_done else max(run.items_fetched, 1) * 2
        self._progress.update(task, total=total, completed=run.items_settled, status=shown(run.status), pages=run.pages)


# Tables fit the width they are printed at (80 columns in a pipe): short headers, one-space gaps, every column
# as wide as its content except one (service, text) that gives way, and long text (errors, reasons) on lines of
# its own. `--json` is the form for machines.
SUMMARY_COLUMNS = ("service", "status", "fetched", "stored", "same", "deleted", "swept", "dead", "s", "items/s")
RUN_COLUMNS = ("run", "service", "status", "fetched", "stored", "swept", "dead", "pending", "started")
FAILED = ("failed", "held")
TEXT_COLUMNS = ("run", "tenant", "service", "status", "started", "item", "text")


Row = list[Text]


def fitted_table(title: str, columns: tuple[str, ...], rows: list[Row], flex: str, width: int) -> Table:
    """A table `width` columns wide at most: each column as wide as its widest cell, `flex` cut with an
    ellipsis to the room left. The title and cells are shown as data."""
    natural = [max([len(c)] + [row[i].cell_len for row in rows]) for i, c in enumerate(columns)]
    at = columns.index(flex)
    room = width - (sum(natural) - natural[at]) - (len(columns) - 1)
    table = Table(
        title=as_text(title, "table.title"),  # the title a str would get, without reading it as markup
        title_justify="left",
        box=box.SIMPLE_HEAD,
        padding=(0, 0),
        pad_edge=False,
        show_edge=False,
    )
    for i, column in enumerate(columns):
        justify: JustifyMethod = "left" if column in TEXT_COLUMNS else "right"
        if i == at:
            table.add_column(column, justify=justify, no_wrap=True, overflow="ellipsis", max_width=max(room, 6))
        else:
            table.add_column(column, justify=justify, no_wrap=True, width=natural[i])
    for row in rows:
        table.add_row(*row)
    return table


def _lines(lines: list[str]) -> Group:
    return Group(*(as_text(line) for line in lines))


def _summary_row(label: Text, status: Text, runs: list[RunState], seconds: float) -> Row:
    fetched = sum(r.items_fetched for r in runs)
    counts = [
        fetched,
        sum(r.items_upserted for r in runs),
        sum(r.items_skipped for r in runs),
        sum(r.deleted for r in runs),
        sum(r.swept for r in runs),
        sum(r.dead_lettered for r in runs),
    ]
    rate = fetched / seconds if seconds else 0.0
    return [label, status, *(Text(str(count)) for count in counts), Text(f"{seconds:.1f}"), Text(f"{rate:.0f}")]


def summary_table(report: SyncReport, width: int = 80) -> Group:
    """Per service: items fetched / stored / found unchanged / deleted / dead-lettered, seconds, rate; then
    the error of each failed run."""
    rows = [
        _summary_row(
            as_text(run.service), as_text(run.status, "red" if run.status in FAILED else ""), [run], run.seconds
        )
        for run in report.runs
    ]
    rows.append(_summary_row(Text("all", style="bold"), Text(""), report.runs, report.seconds))
    title = f"sync finished in {report.seconds:.1f}s; {report.points_in_collection} points in Qdrant"
    # A held run's error starts with "held:" already.
    failed = [
        f"{run.service}{'' if run.status == 'held' else ' failed'}: {run.error}"
        for run in report.runs
        if run.status in FAILED
    ]
    return Group(fitted_table(title, SUMMARY_COLUMNS, rows, "service", width), _lines(failed + _related(report)))


def _related(report: SyncReport) -> list[str]:
    related = report.related
    if related is None:
        return []
    if related.error:
        return [f"related-content edges failing ({related.waiting} items waiting): {related.error}"]
    if related.waiting:
        return [f"related-content edges: {related.waiting} items still waiting (raise --timeout)"]
    return [f"related-content edges computed, {related.seconds:.1f}s after the runs ended"]


def runs_table(runs: list[RunState], width: int = 80) -> Group:
    """The runs, newest first: status, progress, start (the tenant's column only when there are several);
    then each run's error under the table."""
    tenants = sorted({run.tenant_id for run in runs})
    colours = {
        "succeeded": "green",
        "failed": "red",
        "held": "red",
        "superseded": "magenta",
        "stalled": "yellow",
        "skipped": "magenta",
    }
    rows = []
    for run in runs:
        colour = colours.get(run.status, "cyan")
        rows.append(
            [
                as_text(run.run_id[:8]),
                *([] if len(tenants) == 1 else [as_text(run.tenant_id)]),
                as_text(run.service),
                as_text(run.status, colour),
                Text(str(run.items_fetched)),
                Text(str(run.items_upserted)),
                Text(str(run.swept)),
                Text(str(run.dead_lettered)),
                Text(str(run.items_pending)),
                Text(run.started_at.strftime("%m-%d %H:%M") if run.started_at else ""),
            ]
        )
    columns: tuple[str, ...] = RUN_COLUMNS
    title = f"{len(runs)} sync runs of tenant {tenants[0]}"
    if len(tenants) > 1:
        title, columns = f"{len(runs)} sync runs", ("run", "tenant", *RUN_COLUMNS[1:])
    errors = [f"{run.run_id[:8]} {run.service}: {run.error}" for run in runs if run.error]
    return Group(fitted_table(title, columns, rows, "service", width), _lines(errors))


def letters_table(letters: list[StoredLetter]) -> Group:
    """Dead letters, two lines each: where, when, which stage, run and item; then the reason."""
    lines: list[Text] = [Text(f"{len(letters)} dead letters", style="italic")]
    for stored in letters:
        letter = stored.letter
        parts = (
            stored.ref,
            letter.at.strftime("%m-%d %H:%M:%S"),
            letter.stage,
            letter.service or "",
            f"run {letter.run_id[:8]}" if letter.run_id else "",
            f"item {letter.item_id}" if letter.item_id else "",
        )
        lines += [as_text(" ".join(part for part in parts if part), "bold"), as_text(f"  {letter.reason}")]
    return Group(*lines)


def hits_table(query: str, hits: list[Hit], width: int = 80, related: list[list[RelatedItem]] | None = None) -> Table:
    """Search results: score, service, tenant, item id, the start of the text (cut to the width); with `related`
    (one list per hit), each hit's related items under it, marked ↳."""
    rows = []
    for n, hit in enumerate(hits):
        p = hit.payload
        rows.append(
            [
                Text(f"{hit.score:.3f}"),
                as_text(p.get("service")),
                as_text(p.get("tenant_id")),
                as_text(p.get("item_id")),
                _cut(p.get("text", "")),
            ]
        )
        for item in related[n] if related else []:
            edge = item.edge
            score = Text(f"↳ {edge.score:.3f}")
            rows.append([score, as_text(edge.service), as_text(edge.tenant_id), as_text(edge.item_id), _cut(item.text)])
    columns = ("score", "service", "tenant", "item", "text")
    return fitted_table(f"top {len(hits)} for {query!r}", columns, rows, "text", width)


def related_table(service: str, item_id: str, items: list[RelatedItem], width: int = 80) -> Table:
    """An item's related items: score, service, item id, the start of the text."""
    rows = [
        [Text(f"{i.edge.score:.3f}"), as_text(i.edge.service), as_text(i.edge.item_id), _cut(i.text)] for i in items
    ]
    title = f"{len(items)} related to {service}/{item_id}"
    return fitted_table(title, ("score", "service", "item", "text"), rows, "text", width)


def _cut(text: object) -> Text:
    """The start of a record's text on one line: its line breaks as ` | `, the rest shown as data."""
    return as_text(str(text).replace("\n", " | ")[:300])
