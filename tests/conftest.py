"""Shared fixtures: a real broker, the real model, embedded Qdrant, settings isolated per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from ragsync.app import options
from ragsync.messaging.local_broker import LocalBroker
from ragsync.model.encoder import TextEncoder
from ragsync.settings import Settings
from ragsync.store import VectorStore, open_store


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test by its folder: tests/unit -> unit, tests/integration -> integration."""
    for item in items:
        folder = Path(str(item.fspath)).parent.name
        if folder in ("unit", "integration"):
            item.add_marker(getattr(pytest.mark, folder))


# A test group skipped because a tool is missing, and the command that enables it (what .ci/run installs as root).
SKIPPED_GROUPS = (
    (
        ("promtool", "prometheus"),
        "Prometheus checks (alert rules, dashboard queries, lag alert)",
        "apt-get install prometheus",
    ),
    (("stunnel",), "Kafka over TLS", "apt-get install stunnel4"),
    (("docker-compose",), "compose file checks", "apt-get install docker-compose"),
    (("kubectl",), "Kubernetes manifest checks", "apt-get install kubectl (kubectl kustomize)"),
    (("node_modules", "`node`"), "dashboard and KEDA type checks", "apt-get install npm && make tools"),
)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line per group of tests skipped for a missing tool, with the command that enables it."""
    reasons = [str(getattr(report, "longrepr", "")) for report in terminalreporter.stats.get("skipped", [])]
    lines = []
    for words, group, command in SKIPPED_GROUPS:
        count = sum(1 for reason in reasons if any(word in reason for word in words))
        if count:
            lines.append(f"skipped {count} test(s): {group}; enable with: {command}")
    if lines:
        terminalreporter.section("skipped for a missing tool")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def broker() -> Iterator[LocalBroker]:
    """One memory-only Kafka-protocol broker for the whole session."""
    with LocalBroker() as local:
        yield local


@pytest.fixture(scope="session")
def encoder() -> TextEncoder:
    """The real embedding model, loaded once."""
    model = TextEncoder()
    assert model.dimension == 384
    return model


@pytest.fixture
def settings(tmp_path: Path, broker: LocalBroker) -> Settings:
    """Settings whose topics, store and data folder belong to this test alone."""
    return Settings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        kafka_topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
        kafka_partitions=4,
        kafka_session_timeout_ms=6000,
        data_dir=tmp_path / "data",
        qdrant_path=tmp_path / "qdrant",
        coordinator_backoff_initial=0.05,
        coordinator_backoff_max=0.2,
        batch_sync_limit=50,
        _env_file=None,
    )


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[VectorStore]:
    """The default embedded store (qdrant-edge, on disk) for this test."""
    vector_store = open_store(options.store(settings))
    yield vector_store
    vector_store.close()
