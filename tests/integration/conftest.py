"""Running stages in the test's event loop, against the session's broker."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
from aiokafka import AIOKafkaConsumer

from ragsync.app.application import App
from ragsync.events import TenantRequest
from ragsync.messaging.local_broker import free_port
from ragsync.messaging.sync_requests import publish_requests
from ragsync.model.encoder import TextEncoder
from ragsync.proto import coordinator_pb2, coordinator_pb2_grpc
from ragsync.runstate.ledger import RunLedger
from ragsync.runstate.runs import RunState
from ragsync.store import VectorStore


@contextlib.asynccontextmanager
async def fetcher_running(app: App, coordinator_endpoint: str) -> AsyncIterator[asyncio.Task[None]]:
    """The fetcher agent until the block ends; a crash fails the test at the end of the block."""
    stop = asyncio.Event()
    task = asyncio.create_task(app.run_fetcher(stop, coordinator_endpoint))
    try:
        yield task
    finally:
        stop.set()
        await task


@contextlib.asynccontextmanager
async def embedders_running(
    app: App, store: VectorStore, encoder: TextEncoder, count: int = 1
) -> AsyncIterator[asyncio.Task[None]]:
    """`count` embedding consumers until the block ends."""
    stop = asyncio.Event()
    task = asyncio.create_task(app.run_embedders(stop, count, store, encoder))
    try:
        yield task
    finally:
        stop.set()
        await task


async def read_all(bootstrap: str, topic: str, expected: int, timeout: float = 30.0) -> list[bytes]:
    """Every message value of `topic`, waiting until at least `expected` arrived."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    values: list[bytes] = []
    try:
        async with asyncio.timeout(timeout):
            while len(values) < expected:
                batch = await consumer.getmany(timeout_ms=200)
                values += [m.value for records in batch.values() for m in records]
    finally:
        await consumer.stop()
    return values


class ScriptedCoordinator(coordinator_pb2_grpc.CoordinatorServiceServicer):
    """A real gRPC server that answers call N with scripted answer N (the last one repeats); ignores `page`."""

    def __init__(self, answers: list[tuple[str, dict[str, str]]]) -> None:
        self.answers = answers
        self.calls = 0

    async def Route(
        self, request: coordinator_pb2.RouteRequest, context: grpc.aio.ServicerContext
    ) -> coordinator_pb2.RouteResponse:
        envelope, fields = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        return coordinator_pb2.RouteResponse(envelope_json=envelope, normalized_fields=fields)


@contextlib.asynccontextmanager
async def coordinator_serving(servicer: coordinator_pb2_grpc.CoordinatorServiceServicer) -> AsyncIterator[str]:
    """`servicer` as a real gRPC server on a free port, until the block ends: its endpoint."""
    server = grpc.aio.server()
    coordinator_pb2_grpc.add_CoordinatorServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


@contextlib.asynccontextmanager
async def scripted_coordinator(
    answers: list[tuple[str, dict[str, str]]],
) -> AsyncIterator[tuple[str, ScriptedCoordinator]]:
    """A scripted Coordinator on a free port: (endpoint, servicer)."""
    servicer = ScriptedCoordinator(answers)
    async with coordinator_serving(servicer) as endpoint:
        yield endpoint, servicer


@contextlib.contextmanager
def prometheus_running(config: dict[str, Any], folder: Path, prometheus: str) -> Iterator[str]:
    """A real Prometheus with `config` (its storage in `folder`) until the block ends: its base URL."""
    path = folder / "prometheus.yml"
    path.write_text(json.dumps(config))
    port = free_port()
    process = subprocess.Popen(
        [
            prometheus,
            f"--config.file={path}",
            f"--storage.tsdb.path={folder / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


async def request_sync(app: App, service: str, **fields: Any) -> TenantRequest:
    """Publish one sync request (and its queued notice) for `service`; the request."""
    request = TenantRequest(service=service, tenant_id=fields.pop("tenant_id", "default-tenant"), **fields)
    async with app.publisher() as publisher:
        await publish_requests(publisher, app.topics, [request])
    return request


async def until_pages(ledger: RunLedger, run_id: str, pages: int, timeout: float = 60) -> RunState:
    """Wait until the run has completed `pages` pages; the run."""
    async with asyncio.timeout(timeout):
        while (run := ledger.book.get(run_id)) is None or run.pages < pages:
            await asyncio.sleep(0.05)
    return run
