"""Log lines for people and for log pipelines: plain text, or one JSON object a line (LOG_FORMAT=json), each with
the run, tenant and service it is about where a stage knows them.

A stage that works on one run says so once (`about_run`); every line logged inside, by any module, carries the
run's ids, without passing them to each call.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from enum import StrEnum
from typing import TextIO

from pythonjsonlogger.json import JsonFormatter

from ragsync.shown import ShownLogRecords

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
RUN_FIELDS = ("run_id", "tenant_id", "service")
_run: ContextVar[dict[str, str] | None] = ContextVar("ragsync_log_run", default=None)


class LogFormat(StrEnum):
    """How log lines are written."""

    text = "text"
    json = "json"


@contextlib.contextmanager
def about_run(run_id: str, tenant_id: str, service: str) -> Iterator[None]:
    """Every line logged in the block is about this run."""
    token = _run.set({"run_id": run_id, "tenant_id": tenant_id, "service": service})
    try:
        yield
    finally:
        _run.reset(token)


class RunFields(logging.Filter):
    """Puts the ids of the run being worked on (`about_run`) on each record, for the JSON lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in (_run.get() or {}).items():
            setattr(record, name, value)
        return True


def configure(level: str, form: LogFormat, stream: TextIO | None = None) -> None:
    """Log to `stream` (stderr) at `level`, as text or as JSON lines (time, level, logger, message, and the run's
    ids where known); either way each message is one line of visible text (`ShownLogRecords`)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if form is LogFormat.json:
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                json_ensure_ascii=False,
            )
        )
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    handler.addFilter(ShownLogRecords())
    handler.addFilter(RunFields())
    logging.basicConfig(level=level, handlers=[handler], force=True)
