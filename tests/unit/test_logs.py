"""Log lines as JSON objects (LOG_FORMAT=json): time, level, logger, message, and the run's ids where a stage
works on one; as plain text otherwise. Either way one line per message, whatever the data in it."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from ragsync.operations.logs import LogFormat, about_run, configure


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_carry_the_run_being_worked_on(restored_logging: None) -> None:
    stream = io.StringIO()
    configure("INFO", LogFormat.json, stream)
    log = logging.getLogger("ragsync.streams.fetcher")
    with about_run("r1", "acme\nERROR forged", "payment-service"):
        log.info("page %d of %s", 3, "payment-service")
    log.warning("outside any run")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert {k: first[k] for k in ("level", "logger", "message", "run_id", "service")} == {
        "level": "INFO",
        "logger": "ragsync.streams.fetcher",
        "message": "page 3 of payment-service",
        "run_id": "r1",
        "service": "payment-service",
    }
    assert first["tenant_id"] == "acme\nERROR forged" and first["time"]  # data in a JSON string, escaped by JSON
    assert second["message"] == "outside any run" and "run_id" not in second


def test_text_lines_stay_one_line_whatever_the_message_holds(restored_logging: None) -> None:
    stream = io.StringIO()
    configure("INFO", LogFormat.text, stream)
    logging.getLogger("ragsync").warning("record %s", "x\nERROR forged line")
    [line] = stream.getvalue().splitlines()
    assert line.endswith("WARNING ragsync: record x\\nERROR forged line")
