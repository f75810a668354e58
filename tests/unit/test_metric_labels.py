"""Metric labels are bounded: a service that is not configured, or a stage that is not known, is `other`."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from prometheus_client import REGISTRY
from prometheus_client.registry import CollectorRegistry

from ragsync.coordinator import CoordinatorClient, CoordinatorError
from ragsync.coordinator.request import CallerIdentity
from ragsync.events import FetchProgress, TenantRequest
from ragsync.operations import metrics
from ragsync.proto import coordinator_pb2
from ragsync.runstate.run_gauges import RunBookCollector
from ragsync.runstate.runs import RunBook
from ragsync.settings import DEFAULT_SERVICES
from ragsync.streams.fetcher import FetchLimits, SyncRunner
from tests.unit.doubles import KeptPublisher, channel, unfed_ledger

CONFIGURED = ("payment-service", "labs-service")


@pytest.fixture(autouse=True)
def configured_services() -> Iterator[None]:
    metrics.label_services(CONFIGURED)
    yield
    metrics.label_services(DEFAULT_SERVICES)


def test_a_configured_service_and_a_known_stage_are_their_own_label_and_anything_else_is_other() -> None:
    assert [metrics.service_label(s) for s in ("labs-service", "made-up-1", "payment-service", "")] == [
        "labs-service",
        "other",
        "payment-service",
        "other",
    ]
    assert [metrics.stage_label(s) for s in ("fetched", "upserted", "embedder", "fetcher", "nonsense")] == [
        "fetched",
        "upserted",
        "embedder",
        "fetcher",
        "other",
    ]
    metrics.label_services(["made-up-1"])  # what the settings configure decides, not a fixed list
    assert (metrics.service_label("made-up-1"), metrics.service_label("labs-service")) == ("made-up-1", "other")


class RefusingCoordinator(CoordinatorClient):
    """A Coordinator that fails every call for good."""

    def __init__(self) -> None:
        pass

    async def route(
        self, request: coordinator_pb2.RouteRequest, timeout: float, service: str, page: int
    ) -> coordinator_pb2.RouteResponse:
        raise CoordinatorError(service, page, None, "refused (injected)", 1)


def _failures(service: str) -> float:
    return REGISTRY.get_sample_value("ragsync_run_failures_total", {"service": service}) or 0.0


async def test_a_run_of_a_made_up_service_is_counted_under_other() -> None:
    runner = SyncRunner(
        FetchLimits(identity=CallerIdentity()), RefusingCoordinator(), channel(unfed_ledger(), KeptPublisher())
    )
    before = {service: _failures(service) for service in ("other", "labs-service")}
    for service in ("made-up-7", "made-up-8", "labs-service"):
        outcome = await runner.run(TenantRequest(service=service, tenant_id="t"))
        assert outcome.error is not None and "refused (injected)" in outcome.error
    assert _failures("other") == before["other"] + 2 and _failures("labs-service") == before["labs-service"] + 1
    assert REGISTRY.get_sample_value("ragsync_run_failures_total", {"service": "made-up-7"}) is None


def test_the_run_gauges_count_unconfigured_services_under_other() -> None:
    book = RunBook()
    for n, service in enumerate(["payment-service", "made-up-1", "made-up-2", "made-up-2"]):
        request = TenantRequest(run_id=f"r{n}", service=service, tenant_id="t")
        started = datetime(2026, 11, 1, 12, n, tzinfo=UTC)
        book.apply(FetchProgress.begin(request).model_copy(update={"at": started}))
    registry = CollectorRegistry()
    registry.register(RunBookCollector(lambda: book))
    runs = {
        sample.labels["service"]: sample.value
        for family in registry.collect()
        if family.name == "ragsync_runs"
        for sample in family.samples
    }
    assert runs == {"payment-service": 1, "other": 3}
