"""The run gauges on `/metrics`: runs by status, the last success per service and the items still pending, read
from a ledger's book when Prometheus scrapes."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

from ragsync.operations.metrics import service_label
from ragsync.runstate.runs import RunBook


class RunBookCollector(Collector):
    """Run gauges read from a ledger's book at scrape time: runs by status, last success per service."""

    def __init__(self, book: Callable[[], RunBook]) -> None:
        self._book = book

    def collect(self) -> Iterator[GaugeMetricFamily]:
        book = self._book()
        by_status = GaugeMetricFamily(
            "ragsync_runs", "Runs in the ledger by service and status.", labels=["service", "status"]
        )
        by_label = Tally((service_label(r.service), r.status) for r in book.runs.values())
        for (service, status), count in by_label.items():
            by_status.add_metric([service, status], count)
        yield by_status
        last_success = GaugeMetricFamily(
            "ragsync_last_success_timestamp_seconds", "End of the latest succeeded run, by service.", labels=["service"]
        )
        latest: dict[str, float] = {}
        for cursor in book.cursors.values():  # cursors never expire, unlike the runs they point at
            stamp = cursor.last_success.finished_at.timestamp()
            service = service_label(cursor.service)
            latest[service] = max(latest.get(service, 0.0), stamp)
        for service, stamp in latest.items():
            last_success.add_metric([service], stamp)
        yield last_success
        pending = GaugeMetricFamily(
            "ragsync_run_items_pending", "Fetched items of active runs not in Qdrant yet.", labels=["service"]
        )
        per_service: Tally[str] = Tally()
        for run in book.active():
            per_service[service_label(run.service)] += run.items_pending
        for service, count in per_service.items():
            pending.add_metric([service], count)
        yield pending


def register_run_gauges(book: Callable[[], RunBook]) -> RunBookCollector:
    """Expose run gauges from `book` on this process's `/metrics`."""
    collector = RunBookCollector(book)
    REGISTRY.register(collector)
    return collector
