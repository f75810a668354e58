"""Data shown as data: hostile record texts, ids, tenants and errors through `shown`, the tables and the logs."""

from __future__ import annotations

import io
import logging
import unicodedata
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console, RenderableType

from ragsync.cli.console import RunProgressBars, hits_table, letters_table, related_table, runs_table, summary_table
from ragsync.events import DeadLetter, FetchProgress, SyncRequest
from ragsync.messaging.dead_letters import StoredLetter
from ragsync.runstate.runs import RunState, SyncReport
from ragsync.shown import ShownLogRecords, as_text, labelled, shown
from ragsync.store import Hit
from ragsync.store.related_edges import Edge, RelatedItem

# Written out here rather than taken from ragsync.shown, so that a character dropped there fails a test.
BIDI = {"\u061c", "\u200e", "\u200f", "\u202a", "\u202b", "\u202c", "\u202d", "\u202e"} | {
    "\u2066",
    "\u2067",
    "\u2068",
    "\u2069",
}
HOSTILE = [
    "closing [/] with nothing open",
    "[bold red]x[/bold red]",
    "[link=http://x]y[/link]",
    "\x1b[31mred\x1b[0m and \x1b]8;;http://x\x07link\x1b]8;;\x07",
    "abc\u202edcba",
    "acme\n2026-01-01 00:00:00 ERROR ragsync: forged",
    "bell\x07 back\x08 del\x7f c1\x9b31m",
    "lone \ud800 surrogate \udc80",
    "trailing backslash \\",
    ":thumbs_up: [@click=quit]",
]


def _acting(char: str) -> bool:
    """A character that would act on a terminal or a reader instead of being seen."""
    return unicodedata.category(char) in ("Cc", "Cs", "Zl", "Zp") or char in BIDI


hostile_text = st.lists(
    st.one_of(
        st.text(st.characters(exclude_categories=())),  # every code point, lone surrogates included
        st.sampled_from(HOSTILE),
        st.sampled_from([*sorted(BIDI), "\x1b[", "[", "]", "[/", "\\"]),
    ),
    max_size=8,
).map("".join)


@given(hostile_text)
@settings(max_examples=300, deadline=None)
def test_shown_text_holds_no_acting_character_and_rich_prints_it_as_it_reads(value: str) -> None:
    visible = shown(value)
    assert not [char for char in visible if _acting(char)]
    printed = io.StringIO()
    console = Console(file=printed, width=100_000)  # emoji codes and markup on: neither may touch data
    console.print(as_text(value), labelled("failed:", value), sep="|", end="")
    assert printed.getvalue() == f"{visible}|failed: {visible}"


@given(st.text(st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp"))).filter(lambda s: not set(s) & BIDI))
def test_text_with_nothing_acting_is_shown_unchanged(value: str) -> None:
    assert shown(value) == value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("\x1b[31mred", "\\x1b[31mred"),
        ("a\nb\tc\rd", "a\\nb\\tc\\rd"),
        ("\x00\x7f\x85\x9f", "\\x00\\x7f\\x85\\x9f"),
        ("abc\u202edcba\u2066x\u2069", "abc\\u202edcba\\u2066x\\u2069"),
        ("\u061c\u200e\u200f", "\\u061c\\u200e\\u200f"),
        ("half \ud83d of an emoji", "half \\ud83d of an emoji"),
        ("line\u2028sep", "line\\u2028sep"),
        ("[bold]kept as written[/bold] 😀 é", "[bold]kept as written[/bold] 😀 é"),
        (42, "42"),
    ],
)
def test_shown_escapes_what_acts_and_keeps_the_rest(value: object, expected: str) -> None:
    assert shown(value) == expected


T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def _run(tenant: str, service: str, error: str | None = None) -> RunState:
    run_id = "r\x1b[2J" + tenant[:3]
    request = SyncRequest(run_id=run_id, tenant_id=tenant, service="s", sync_type="batch")
    status = "failed" if error else "fetched"
    fetch = FetchProgress(
        run_id=run_id, tenant_id=tenant, service=service, request=request, status=status, error=error, at=T0
    )
    run = RunState(run_id=run_id, tenant_id=tenant, service=service)
    run.apply(fetch)
    return run


def _rendered(renderable: RenderableType, terminal: bool = False) -> str:
    printed = io.StringIO()
    console = Console(file=printed, width=80, force_terminal=terminal, color_system="standard" if terminal else None)
    console.print(renderable)
    return printed.getvalue()


def _assert_data_shown(output: str) -> None:
    assert not [char for char in output if _acting(char) and char != "\n"], repr(output)
    assert "[/]" in output and "\\x1b" in output and "\\u202e" in output


def _hits() -> list[Hit]:
    payload = {"service": "[bold red]x[/bold red]", "tenant_id": "acme\nforged", "item_id": "\u202eid"}
    return [Hit(0.5, {**payload, "text": " ".join(HOSTILE)}), Hit(0.4, {**payload, "text": HOSTILE[0]})]


def test_search_hits_with_markup_and_escapes_in_every_field_are_shown_as_data() -> None:
    related = [[RelatedItem(Edge("t[/]", "[link=http://x]y[/link]", "\x1b[31m", 0.7), "[/] \x1b[0m \u202e")], []]
    output = _rendered(hits_table("[/] query \x1b[1m", _hits(), 80, related))
    _assert_data_shown(output)
    assert "↳ 0.700" in output and "\\n" in output  # the newline of the tenant id, escaped


def test_related_table_shows_hostile_ids_and_texts_as_data() -> None:
    items = [RelatedItem(Edge("t", "[/]svc", "\u202eitem\x1b[31m", 0.8), text) for text in HOSTILE]
    _assert_data_shown(_rendered(related_table("[/]", "\x1b[2J", items, 80)))


def test_runs_table_keeps_its_colours_on_a_terminal_and_shows_tenants_and_errors_as_data() -> None:
    runs = [_run("acme\nforged", "[/]svc", "boom \x1b[31m[bold]\u202e"), _run("[bold]t", "svc", None)]
    _assert_data_shown(_rendered(runs_table(runs, 80)))
    coloured = _rendered(runs_table(runs, 80), terminal=True)
    assert "\x1b[31mfailed" in coloured  # the table's own red, on a terminal
    assert "\\x1b[31m" in coloured and "\x1b[2J" not in coloured  # the data's escapes, shown


def test_summary_table_and_progress_lines_show_failed_runs_as_data() -> None:
    report = SyncReport(
        runs=[_run("acme", "[/]svc", "page 1: [link=http://x]y[/link] \x1b[31m\u202e")],
        seconds=1.0,
        points_in_collection=0,
    )
    output = _rendered(summary_table(report, 80))
    _assert_data_shown(output)
    assert "[link=http://x]y[/link]" in output


def test_progress_bars_show_a_hostile_service_name_as_data() -> None:
    printed = io.StringIO()
    console = Console(file=printed, width=80, force_terminal=True, color_system="standard")
    with RunProgressBars(console) as bars:
        bars.update(_run("acme", "[/]\x1b[2Jsvc\u202e"))
    output = printed.getvalue()
    assert "[/]\\x1b[2Jsvc\\u202e" in output
    assert "\x1b[2J" not in output and "\u202e" not in output


def test_dead_letters_show_reasons_ids_and_services_as_data() -> None:
    letter = DeadLetter(
        run_id="run\x1b[2J",
        tenant_id="acme\nforged",
        service="[/]",
        item_id="\u202eitem",
        stage="fetcher",
        reason="page 1: [bold red]x[/bold red] \x1b[31m\ud800",
        source_topic="coordinator:x",
        original="{}",
        at=T0,
    )
    output = _rendered(letters_table([StoredLetter(0, 7, letter)]))
    _assert_data_shown(output)
    assert "\\ud800" in output


def test_a_newline_or_escape_in_a_log_argument_cannot_forge_a_line() -> None:
    written = io.StringIO()
    handler = logging.StreamHandler(written)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(ShownLogRecords())
    logger = logging.getLogger("tests.shown")
    logger.addHandler(handler)
    try:
        logger.warning("run %s of tenant %s: %s", "r1", "acme\nERROR forged line", "\x1b[31mred\u202e")
        logger.warning("%d items", 3)
    finally:
        logger.removeHandler(handler)
    lines = written.getvalue().splitlines()
    assert lines == [
        "WARNING run r1 of tenant acme\\nERROR forged line: \\x1b[31mred\\u202e",
        "WARNING 3 items",
    ]
