"""Related-content edges: first syncs with RELATED_EDGES=on and off, alternating in one process against the same
ceiling, and the edge stage's own rate on a stored collection.

Both pipelines run side by side (an idle one only polls), so each pair of syncs sees the same machine. With edges
on, the stage works during the sync, behind the embedder's commits; the seconds it still needed after the run
ended are shown, outside the clock, and the next sync starts once it caught up.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from benchmarks.consumers import pruned, synced
from benchmarks.pipeline import CORPORA, Bench
from benchmarks.report import Row
from ragsync.app import options
from ragsync.app.application import App
from ragsync.demo.coordinator_server import CoordinatorServer, DemoCoordinator
from ragsync.demo.records import demo_record
from ragsync.events import ItemEvent
from ragsync.messaging.delivery import Delivered, Position
from ragsync.runstate.ledger import RunLedger
from ragsync.settings import Settings
from ragsync.store import VectorStore, open_store
from ragsync.streams.related import EdgeTally, RelatedEdges

PAIRS = 3


@dataclass
class Running:
    """One pipeline (fetcher and embedder) in this process, and its ledger and store."""

    app: App
    ledger: RunLedger
    store: VectorStore
    tasks: list[asyncio.Task[None]]


@contextlib.asynccontextmanager
async def _running(bench: Bench, endpoint: str, service: str, related: bool) -> AsyncIterator[Running]:
    app = App(bench.settings(batch_sync_services=[service], related_edges=related))
    await app.ensure_topics()
    store = open_store(options.store(app.settings))
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(app.run_fetcher(stop, endpoint)),
        asyncio.create_task(app.run_embedders(stop, 1, store, bench.encoder)),
    ]
    try:
        async with app.ledger() as ledger:
            running = Running(app, ledger, store, tasks)
            await pruned(ledger, await synced(app, ledger, "analytics-service", tasks), tasks)  # joined, warm
            if app.related is not None:  # its edges too, before any timed sync of either pipeline
                await app.related.caught_up(asyncio.Event())
            yield running
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        store.close()


async def _first_sync(running: Running, service: str, tenant: str) -> tuple[float, float]:
    """One timed first sync of `tenant`; its seconds and how long the edges took after it (0 with edges off)."""
    started = time.perf_counter()
    run = await synced(running.app, running.ledger, service, running.tasks, tenant_id=tenant)
    seconds = time.perf_counter() - started
    ended = time.perf_counter()
    if running.app.related is not None:
        await running.app.related.caught_up(asyncio.Event())
        assert running.app.related.last_error is None, running.app.related.last_error
    after = time.perf_counter() - ended if running.app.related is not None else 0.0
    await pruned(running.ledger, run, running.tasks)
    return seconds, after


async def related_rows(bench: Bench, count: int) -> list[Row]:
    """First syncs with edges off and on, in pairs, and the stage's own rate."""
    corpus = "short"
    service = CORPORA[corpus]
    texts = bench.texts(corpus, count)
    off: list[float] = []
    on: list[tuple[float, float]] = []
    async with (
        CoordinatorServer(DemoCoordinator(count)) as coordinator,
        _running(bench, coordinator.endpoint, service, related=False) as without,
        _running(bench, coordinator.endpoint, service, related=True) as with_edges,
    ):
        for n in range(PAIRS):  # each pair in the other order than the last
            for running in (without, with_edges) if n % 2 == 0 else (with_edges, without):
                timed = await _first_sync(running, service, f"tenant-{n}")
                if running is with_edges:
                    on.append(timed)
                else:
                    off.append(timed[0])
            await bench.raw_encode(corpus, texts)
        alone, seconds, tally = await _stage_alone(without.store, service, count, with_edges.app.settings)
    ceiling = bench.best_ceiling(corpus)
    ratios_off = [count / s / ceiling for s in off]
    ratios_on = [count / s / ceiling for s, _ in on]
    best_on = max(ratios_on)
    return [
        Row(
            "first sync, RELATED_EDGES=off",
            corpus,
            count,
            min(off),
            count / min(off),
            f"{max(ratios_off):.2f} of ceiling (runs: {_listed(ratios_off)})",
        ),
        Row(
            "first sync, RELATED_EDGES=on",
            corpus,
            count,
            min(s for s, _ in on),
            count / min(s for s, _ in on),
            f"{best_on:.2f} of ceiling (runs: {_listed(ratios_on)}); edges done "
            f"{_listed([after for _, after in on])} s after each run ended",
            "best run within the off runs' spread",
            best_on >= min(ratios_off),
        ),
        Row(
            "related edges stage alone",
            corpus,
            alone,
            seconds,
            alone / seconds,
            f"{tally.edges / seconds:.0f} edges/s (top {with_edges.app.settings.related_top_k} at "
            f">= {with_edges.app.settings.related_min_score}); {alone / seconds / ceiling:.1f}x the raw encode",
            ">= the raw encode (keeps up with the embedder)",
            alone / seconds >= ceiling,
        ),
    ]


async def _stage_alone(
    store: VectorStore, service: str, count: int, settings: Settings
) -> tuple[int, float, EdgeTally]:
    """Edges of one tenant's `count` stored items (written with edges off), in the stage's batches, timed."""
    edges = RelatedEdges(store, options.related_rules(settings))
    events = [
        Delivered(
            ItemEvent(
                run_id="bench",
                tenant_id="tenant-0",
                service=service,
                item_id=str(demo_record(service, i)["id"]),
                page=1,
                record={},
            ),
            Position("items", 0, i),
        )
        for i in range(count)
    ]
    total = EdgeTally()
    started = time.perf_counter()
    for start in range(0, count, settings.related_max_batch):
        tally = await edges.process(events[start : start + settings.related_max_batch])
        total.items.update(tally.items)
        total.edges += tally.edges
    seconds = time.perf_counter() - started
    assert total.items["computed"] == count, total.items
    return count, seconds, total


def _listed(values: list[float]) -> str:
    return ", ".join(f"{value:.2f}" for value in values)
