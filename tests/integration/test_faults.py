"""Fault tests with real processes: `kill -9` a fetcher mid-run and an embedder mid-batch; nothing is lost."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ragsync.app.application import App
from ragsync.app.processes import Components, wait_for_status
from ragsync.demo.coordinator_server import CoordinatorServer, DemoCoordinator, Faults
from ragsync.messaging.local_broker import free_port
from ragsync.model.encoder import TextEncoder
from ragsync.settings import Settings
from ragsync.store import VectorStore
from ragsync.store.edge_store import EdgeStore
from tests.integration.conftest import embedders_running, fetcher_running, request_sync, until_pages
from tests.integration.test_pipeline import expected_ids


@pytest.fixture
def components(settings: Settings, tmp_path: Path) -> Iterator[Components]:
    started = Components(settings, tmp_path)
    yield started
    started.stop_all()


async def test_kill_9_the_fetcher_mid_run_resumes_from_the_checkpoint(
    settings: Settings, store: VectorStore, encoder: TextEncoder, components: Components
) -> None:
    settings = settings.model_copy(update={"batch_sync_limit": 10})
    app = App(settings)
    await app.ensure_topics()
    servicer = DemoCoordinator(300, Faults(latency_s=0.25))
    async with (
        app.ledger() as ledger,
        CoordinatorServer(servicer) as coordinator,
        embedders_running(app, store, encoder) as embedders,
    ):
        env = {"COORDINATOR_GRPC_ENDPOINT": coordinator.endpoint, "OPS_PORT": "0", "BATCH_SYNC_LIMIT": "10"}
        first = components.start("fetcher", **env)
        request = await request_sync(app, "payment-service")
        run = await until_pages(ledger, request.run_id, 5, timeout=90)
        first.send_signal(signal.SIGKILL)
        first.wait()
        await asyncio.sleep(1)  # let in-flight progress land
        checkpoint, calls_before = run.last_page, len(servicer.calls)
        restarted = time.monotonic()
        components.start("fetcher", **env)
        async with asyncio.timeout(120):
            while run.last_page == checkpoint:
                await asyncio.sleep(0.05)
        recovery = time.monotonic() - restarted
        [run] = await ledger.wait([request.run_id], 120, guard=[embedders])

    pages_after = [int(c.request.metadata["page"]) for c in servicer.calls[calls_before:]]
    assert run.status == "succeeded", run.error
    assert 5 <= checkpoint < 30
    assert pages_after[0] == checkpoint + 1, pages_after
    assert 1 not in pages_after
    assert (run.pages, run.items_fetched, run.items_upserted) == (30, 300, 300)
    assert store.count() == 300
    print(f"\nfetcher kill -9 at page {checkpoint}: resumed at page {pages_after[0]} after {recovery:.1f}s")


async def test_kill_9_one_of_two_embedders_mid_batch_loses_nothing(
    settings: Settings, tmp_path: Path, components: Components
) -> None:
    app = App(settings.model_copy(update={"batch_sync_limit": 100}))
    await app.ensure_topics()
    ports, folders = [free_port(), free_port()], [tmp_path / "qdrant-a", tmp_path / "qdrant-b"]
    embedders = [
        components.start("embedder", OPS_PORT=str(port), QDRANT_PATH=str(folder), EMBEDDER_MAX_BATCH="16")
        for port, folder in zip(ports, folders, strict=True)
    ]
    for port in ports:
        await wait_for_status(port, lambda s: s["consumers"][0]["partitions"])
    async with (
        app.ledger() as ledger,
        CoordinatorServer(DemoCoordinator(600)) as coordinator,
        fetcher_running(app, coordinator.endpoint) as fetcher,
    ):
        request = await request_sync(app, "assessment-service")
        victim = await wait_for_status(ports[0], lambda s: s["consumers"][0]["items_processed"] >= 32)
        embedders[0].send_signal(signal.SIGKILL)
        embedders[0].wait()
        killed_at = time.monotonic()
        [run] = await ledger.wait([request.run_id], 180, guard=[fetcher])
        recovery = time.monotonic() - killed_at
    embedders[1].send_signal(signal.SIGTERM)
    assert embedders[1].wait(timeout=30) == 0

    expected = expected_ids(["assessment-service"], 600)
    found = []
    for folder in folders:
        vector_store = EdgeStore.open(folder, settings.qdrant_collection)
        try:
            ids = vector_store.retrieve_ids(sorted(expected))
            assert vector_store.count() == len(ids), "a store holds a point that is not one of the items"
            found.append(ids)
        finally:
            vector_store.close()
    assert run.status == "succeeded", run.error
    assert (run.items_fetched, run.items_upserted) == (600, 600)
    assert found[0] | found[1] == expected, "an item was lost"
    rewritten = len(found[0] & found[1])
    print(
        f"\nembedder kill -9 after {victim['consumers'][0]['items_processed']} items: run complete "
        f"{recovery:.1f}s later; {rewritten} items were in Qdrant before the kill and written again by the survivor"
    )
