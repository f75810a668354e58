"""One-shot sync: every stage in this process until the requested runs are fully in Qdrant (`demo`, `sync`)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

from ragsync.app import options
from ragsync.app.application import App
from ragsync.events import SyncType
from ragsync.messaging.local_broker import BROKER_LOG, LocalBroker
from ragsync.messaging.sync_requests import publish_requests, sync_requests
from ragsync.model.encoder import TextEncoder
from ragsync.runstate.deletions import HELD_FILE, HeldFile
from ragsync.runstate.runs import RelatedProgress, RunState, SyncReport
from ragsync.settings import Settings
from ragsync.store import VectorStore


@contextlib.asynccontextmanager
async def one_shot_app(settings: Settings) -> AsyncIterator[App]:
    """The app on KAFKA_BOOTSTRAP_SERVERS when set, else on a local broker started for the duration. That broker
    has no other client, so the app is exclusive: its consumers read every partition without joining groups."""
    if settings.kafka_bootstrap_servers:
        yield App(settings, settings.kafka_bootstrap_servers)
        return
    broker = LocalBroker(log=settings.data_dir / BROKER_LOG)
    await asyncio.to_thread(broker.start)
    try:
        yield App(settings, broker.bootstrap_servers, exclusive=True)
    finally:
        broker.stop()


async def run_sync(
    app: App,
    store: VectorStore,
    encoder: TextEncoder,
    services: list[str] | None = None,
    sync_type: SyncType = "batch",
    embedders: int = 1,
    coordinator_endpoint: str | None = None,
    timeout: float = 3600.0,
    on_change: Callable[[RunState], None] = lambda run: None,
    tenant: str | None = None,
) -> SyncReport:
    """Start the fetcher and embedders, request the syncs, and wait until each run finished."""
    await app.ensure_topics()
    stop = asyncio.Event()
    components = [
        asyncio.create_task(app.run_fetcher(stop, coordinator_endpoint), name="fetcher"),
        asyncio.create_task(app.run_embedders(stop, embedders, store, encoder, load_model=False), name="embedders"),
    ]
    try:
        async with app.ledger(from_beginning=False) as ledger:
            defaults = options.request_defaults(app.settings)
            requests = sync_requests(defaults, services, "cli", sync_type, tenant_id=tenant)
            started = time.monotonic()
            async with app.publisher() as publisher:
                await publish_requests(publisher, app.topics, requests)
            runs = await ledger.wait([r.run_id for r in requests], timeout, on_change, guard=components)
            seconds = time.monotonic() - started
        related = await _related_caught_up(app, components, timeout - seconds)
    finally:
        stop.set()
        results = await asyncio.gather(*components, return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        raise errors[0]
    if app.exclusive:  # the run state goes with this command's broker: keep what `ragsync prune` needs
        HeldFile(app.settings.data_dir / HELD_FILE).record(runs)
    points = await asyncio.to_thread(store.count)
    return SyncReport(runs=runs, points_in_collection=points, seconds=seconds, related=related)


async def _related_caught_up(app: App, components: list[asyncio.Task[None]], timeout: float) -> RelatedProgress | None:
    """With RELATED_EDGES=on, wait until the stored items' edges are computed too: the local broker goes with
    this command. A failing stage ends the wait, with its error in the report; it never fails the runs."""
    if app.related is None:
        return None
    started = time.monotonic()
    stop_waiting = asyncio.Event()
    waiter = asyncio.ensure_future(app.related.caught_up(stop_waiting))
    await asyncio.wait([waiter, *components], timeout=max(timeout, 1.0), return_when=asyncio.FIRST_COMPLETED)
    stop_waiting.set()
    await waiter
    progress = app.related
    return RelatedProgress(progress.waiting, progress.last_error, time.monotonic() - started)
