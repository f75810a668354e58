"""Embedder processes, as a deployment scales them: throughput with one and two consumers (one torch thread
each), and an embedder's peak memory during syncs of different sizes.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

from producers.trigger import publish_requests, sync_requests
from ragsync.app import App
from ragsync.broker import free_port
from ragsync.demo.coordinator import CoordinatorServer, DemoCoordinator
from ragsync.ledger import RunLedger
from ragsync.processes import Components, peak_rss_mb, wait_for_status
from ragsync.runs import RunState
from ragsync.settings import Settings

SERVICE = "payment-service"


async def timed_sync(
    settings: Settings, folder: Path, count: int, consumers: int, threads: int
) -> tuple[float, list[float]]:
    """Sync `count` items through `consumers` embedder processes (`threads` each, 0: all cores); the seconds it
    took and each process's peak RSS."""
    app = App(settings)
    await app.ensure_topics()
    folder.mkdir(parents=True)
    components = Components(settings, folder)
    ports = [free_port() for _ in range(consumers)]
    processes = [
        components.start(
            "embedder",
            OPS_PORT=str(port),
            QDRANT_PATH=str(folder / f"qdrant-{index}"),  # an embedded store has one owner
            TORCH_THREADS=str(threads) if threads else None,
        )
        for index, port in enumerate(ports)
    ]
    stop = asyncio.Event()
    try:
        for port in ports:  # every member has its share of the partitions, and its model loaded
            await wait_for_status(port, lambda s: s["consumers"][0]["partitions"], timeout=180)
        async with CoordinatorServer(DemoCoordinator(count)) as coordinator, app.ledger() as ledger:
            fetcher = asyncio.create_task(app.run_fetcher(stop, coordinator.endpoint))
            started = time.perf_counter()
            run = await synced(app, ledger, SERVICE, [fetcher])
            seconds = time.perf_counter() - started
            assert run.items_upserted == count, (run.items_upserted, count)
            rss = [peak_rss_mb(p.pid) for p in processes]
            stop.set()
            await fetcher
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(timeout=60)
        components.stop_all()
    return seconds, rss


async def synced(
    app: App, ledger: RunLedger, service: str, guard: list[asyncio.Task[None]], sync_type: str = "batch"
) -> RunState:
    """Request a sync of `service` and wait until its run succeeded (an AssertionError if it failed)."""
    requests = sync_requests(app.settings, [service], "cli", sync_type)  # type: ignore[arg-type]
    async with app.publisher() as publisher:
        await publish_requests(publisher, app.topics, requests)
    [run] = await ledger.wait([requests[0].run_id], 3600, guard=guard)
    assert run.status == "succeeded", run.error
    return run
