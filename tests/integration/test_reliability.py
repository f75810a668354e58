"""Nothing lost, nothing silent: bad input, skipped duplicates, the watchdog, outages (real parts, injected faults)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client import REGISTRY

from ragsync.app import options
from ragsync.app.application import App
from ragsync.demo.coordinator_server import CoordinatorServer, DemoCoordinator, Faults
from ragsync.events import DeadLetter, ItemEvent, SyncRequest, TenantRequest
from ragsync.messaging.kafka import Publisher, make_consumer
from ragsync.messaging.sync_requests import publish_requests
from ragsync.model.encoder import TextEncoder
from ragsync.runstate.channel import RunChannel
from ragsync.runstate.deletions import DeletionGuard
from ragsync.runstate.ledger import RunLedger
from ragsync.runstate.runs import RunState
from ragsync.settings import Settings
from ragsync.store import Point, VectorStore
from ragsync.store.edge_store import EdgeStore
from ragsync.streams.completion import RunCompletion
from ragsync.streams.embedder import BatchOptions, Embedder, EmbeddingConsumer
from ragsync.streams.watchdog import Watchdog
from tests.integration.conftest import (
    embedders_running,
    fetcher_running,
    read_all,
    request_sync,
    scripted_coordinator,
    until_pages,
)


def _nested(depth: int) -> dict[str, Any]:
    record: dict[str, Any] = {"leaf": "x"}
    for _ in range(depth - 1):
        record = {"a": record}
    return record


async def _scripted_sync(app: App, store: VectorStore, encoder: TextEncoder, envelope: str, service: str) -> RunState:
    """Sync `service` of tenant t1 from a Coordinator that answers one page, `envelope`, through every stage."""
    await app.ensure_topics()
    async with (
        app.ledger() as ledger,
        scripted_coordinator([(envelope, {"has_more": "false"})]) as (endpoint, _),
        fetcher_running(app, endpoint) as fetcher,
        embedders_running(app, store, encoder) as embedders,
    ):
        request = TenantRequest(service=service, tenant_id="t1")
        async with app.publisher() as publisher:
            await publish_requests(publisher, app.topics, [request])
        [run] = await ledger.wait([request.run_id], timeout=90, guard=[fetcher, embedders])
    return run


async def test_bad_records_are_dead_lettered_with_reasons_and_the_rest_is_synced(
    settings: Settings, store: VectorStore, encoder: TextEncoder
) -> None:
    records_json = ", ".join(
        [
            json.dumps({"id": "ok-1", "title": "Hebrew שלום, Greek καλημέρα, emoji 🎉🚀"}, ensure_ascii=False),
            json.dumps({"title": "no id at all"}),
            json.dumps({"id": [1, 2], "title": "id of a wrong type"}),
            json.dumps({"id": "dup", "title": "first"}),
            json.dumps({"id": "dup", "title": "second"}),
            json.dumps({"id": "big", "text": "lorem ipsum " * 450_000}),  # ~5.4 MB
            '{"id": "surrogate", "note": "broken \\ud800 half"}',
            json.dumps({"id": "deep", "n": _nested(100)}),
            json.dumps({"id": "deeper", "n": _nested(400)}),
            json.dumps({"id": "nulls", "a": None, "b": None, "c": {"d": None}}),
            json.dumps({"id": 7, "title": "an integer id"}),
        ]
    )
    envelope = '{"data": [' + records_json + "]}"
    app = App(settings.model_copy(update={"run_max_dead_letter_share": 1.0}))  # 6 of 11 dead-lettered: kept going
    run = await _scripted_sync(app, store, encoder, envelope, "bad-service")
    letters = [
        DeadLetter.model_validate_json(v) for v in await read_all(app.bootstrap_servers, app.topics.dead_letters, 6)
    ]

    assert run.status == "succeeded", run.error
    assert (run.items_fetched, run.items_upserted, run.dead_lettered) == (6, 5, 6)
    reasons = sorted(letter.reason for letter in letters)
    assert any("has no id field" in r for r in reasons)
    assert any("id=[1, 2] is not a string or integer id" in r for r in reasons)
    assert any("'dup' appears twice in page 1" in r for r in reasons)
    assert any("over ITEM_MAX_BYTES=1,000,000" in r for r in reasons)
    assert any("levels deep" in r for r in reasons)
    assert any("no text to embed" in r for r in reasons)
    assert all(len(letter.original) < 70_000 for letter in letters)
    by_item = {h.payload["item_id"]: h.payload for h in store.search(encoder.encode(["x"])[0], 10, tenant_id="t1")}
    assert set(by_item) == {"ok-1", "dup", "surrogate", "7", "deep"}
    assert "שלום" in by_item["ok-1"]["text"] and "🎉" in by_item["ok-1"]["text"]
    assert by_item["surrogate"]["record"]["note"] == "broken \ufffd half"
    assert by_item["dup"]["record"]["title"] == "first"


async def test_a_run_whose_records_all_lack_an_id_fails_naming_the_reason_and_the_fix(
    settings: Settings, store: VectorStore, encoder: TextEncoder
) -> None:
    records = [{"course_ref": f"c{n}", "title": f"course {n}"} for n in range(40)] + [{"id": "x", "title": "one"}]
    envelope = json.dumps({"data": records})
    failures = REGISTRY.get_sample_value("ragsync_run_failures_total", {"service": "hidden-courses"}) or 0
    configured = settings.model_copy(update={"batch_sync_services": ["hidden-courses"]})  # its own metric series
    run = await _scripted_sync(App(configured), store, encoder, envelope, "hidden-courses")
    assert run.status == "failed"
    assert (run.items_fetched, run.items_upserted, run.dead_lettered) == (1, 1, 40)
    assert run.error is not None and run.error.startswith("40 of 41 records were dead-lettered (98%")
    assert "most common reason: no id field (40)" in run.error
    assert (
        'fields that look like ids: course_ref; add SCHEMAS_DIR/hidden-courses.toml with id_field = "course_ref"'
        in (run.error)
    )
    assert REGISTRY.get_sample_value("ragsync_run_failures_total", {"service": "hidden-courses"}) == failures + 1
    assert run.fetch is not None and run.end is not None and run.end.status == "failed"


async def test_a_malformed_item_event_is_dead_lettered_and_the_batch_goes_on(
    settings: Settings, store: VectorStore, encoder: TextEncoder
) -> None:
    app = App(settings)
    await app.ensure_topics()
    good = ItemEvent(run_id="r", tenant_id="t", service="s", item_id="1", page=1, record={"id": 1, "title": "fine"})
    producer = AIOKafkaProducer(bootstrap_servers=app.bootstrap_servers)
    await producer.start()
    await producer.send_and_wait(app.topics.items, b"\xff\xfe not json", key=b"x")
    await producer.send_and_wait(app.topics.items, b'{"v": 1, "run_id": "r"}', key=b"y")
    await producer.send_and_wait(app.topics.items, good.to_bytes(), key=good.key.encode())
    await producer.stop()
    async with embedders_running(app, store, encoder):
        letters = [
            DeadLetter.model_validate_json(v) for v in await read_all(app.bootstrap_servers, app.topics.dead_letters, 2)
        ]
        async with asyncio.timeout(30):
            while store.count() < 1:
                await asyncio.sleep(0.2)
    assert {letter.stage for letter in letters} == {"embedder"}
    assert any("Invalid JSON" in letter.reason for letter in letters)
    assert any("tenant_id" in letter.reason and "Field required" in letter.reason for letter in letters)
    assert all(letter.source_offset is not None for letter in letters)
    assert store.count() == 1


async def test_a_second_request_for_an_active_service_is_skipped_visibly(
    settings: Settings, store: VectorStore, encoder: TextEncoder
) -> None:
    app = App(settings.model_copy(update={"batch_sync_limit": 10}))
    await app.ensure_topics()
    async with (
        app.ledger() as ledger,
        CoordinatorServer(DemoCoordinator(60, Faults(latency_s=0.3))) as coordinator,
        fetcher_running(app, coordinator.endpoint) as fetcher,
        embedders_running(app, store, encoder) as embedders,
    ):
        first = await request_sync(app, "payment-service")
        await until_pages(ledger, first.run_id, 1)
        second = await request_sync(app, "payment-service")
        done, skipped = await ledger.wait([first.run_id, second.run_id], 90, guard=[fetcher, embedders])
    assert (done.status, done.items_upserted) == ("succeeded", 60)
    assert skipped.status == "skipped"
    assert skipped.error == f"run {first.run_id} of default-tenant/payment-service is still active"


async def test_the_watchdog_re_requests_a_run_that_no_fetcher_picked_up(
    settings: Settings, store: VectorStore, encoder: TextEncoder
) -> None:
    settings = settings.model_copy(update={"run_stall_timeout": 1.0, "watchdog_interval": 0.3})
    app = App(settings)
    await app.ensure_topics()
    request = TenantRequest(service="devlab-service", tenant_id="default-tenant")
    async with app.ledger() as ledger, app.publisher() as publisher:
        await publish_requests(publisher, app.topics, [request])
        stop = asyncio.Event()
        watching = asyncio.create_task(
            Watchdog(
                options.stall_rules(settings), RunChannel(ledger=ledger, publisher=publisher, topics=app.topics)
            ).run(stop)
        )
        async with asyncio.timeout(30):
            while (run := ledger.book.get(request.run_id)) is None or run.status != "stalled":
                await asyncio.sleep(0.05)
        stop.set()  # the fetcher below may take longer to start than the stall timeout: no more rounds
        await watching
        assert run.error is not None and "before its first page" in run.error
        requests = [
            SyncRequest.model_validate_json(v)
            for v in await read_all(app.bootstrap_servers, app.topics.sync_requests, 2)
        ]
        assert [r.trigger for r in requests] == ["manual", "watchdog"]
        assert {r.run_id for r in requests} == {request.run_id}
        async with (
            CoordinatorServer(DemoCoordinator(30)) as coordinator,
            fetcher_running(app, coordinator.endpoint) as fetcher,
            embedders_running(app, store, encoder) as embedders,
        ):
            [run] = await ledger.wait([request.run_id], 90, guard=[fetcher, embedders])
    assert (run.status, run.items_upserted) == ("succeeded", 30)
    assert run.stalls == 1


async def test_the_watchdog_fails_a_run_whose_items_no_embedder_takes(
    settings: Settings, store: VectorStore, encoder: TextEncoder
) -> None:
    settings = settings.model_copy(
        update={"run_stall_timeout": 1.0, "watchdog_interval": 0.2, "watchdog_max_resumes": 2}
    )
    app = App(settings)
    await app.ensure_topics()
    labels = {"service": "analytics-service", "action": "failed"}
    before = REGISTRY.get_sample_value("ragsync_stalled_runs_total", labels) or 0.0
    async with (
        app.ledger() as ledger,
        app.publisher() as publisher,
        CoordinatorServer(DemoCoordinator(15)) as coordinator,
        fetcher_running(app, coordinator.endpoint) as fetcher,
    ):
        request = TenantRequest(service="analytics-service", tenant_id="default-tenant")
        await publish_requests(publisher, app.topics, [request])
        async with asyncio.timeout(60):  # the watchdog starts once the fetch is done: only the embedder is missing
            while (run := ledger.book.get(request.run_id)) is None or not run.fetch_done:
                await asyncio.sleep(0.05)
        stop = asyncio.Event()
        watching = asyncio.create_task(
            Watchdog(
                options.stall_rules(settings), RunChannel(ledger=ledger, publisher=publisher, topics=app.topics)
            ).run(stop)
        )
        started = time.monotonic()
        [run] = await ledger.wait([request.run_id], 60, guard=[fetcher, watching])
        stop.set()
        await watching
    assert run.status == "failed"
    assert run.error is not None and "stalled: no embedder progress" in run.error and "15 of 15 items" in run.error
    assert REGISTRY.get_sample_value("ragsync_stalled_runs_total", labels) == before + 1
    assert time.monotonic() - started < 30


class FlakyStore(EdgeStore):
    """The real embedded store, with upserts failing while `down` is set (Qdrant unreachable)."""

    down = False
    refused = 0

    def upsert(self, points: list[Point]) -> None:
        if self.down:
            self.refused += 1
            raise ConnectionError("Qdrant unreachable (injected)")
        super().upsert(points)


@dataclass
class Member:
    """One embedding consumer on a store, with a fetcher and a Coordinator of 40 records per service."""

    app: App
    consumer: AIOKafkaConsumer
    member: EmbeddingConsumer
    publisher: Publisher
    ledger: RunLedger
    stages: list[asyncio.Task[None]]

    async def sync(self) -> RunState:
        """Request a payment-service sync; its run once finished."""
        request = TenantRequest(service="payment-service", tenant_id="default-tenant")
        await publish_requests(self.publisher, self.app.topics, [request])
        # This wiring runs no pruner: the run's deletions are not waited for.
        [run] = await self.ledger.wait([request.run_id], 60, guard=self.stages, deletions=False)
        return run


@contextlib.asynccontextmanager
async def member_running(
    settings: Settings, store: VectorStore, encoder: TextEncoder, **batching: Any
) -> AsyncIterator[Member]:
    """A `Member` until the block ends; `batching` goes to its `EmbeddingConsumer`'s `BatchOptions`."""
    app = App(settings)
    await app.ensure_topics()
    consumer = make_consumer(app.kafka, app.topics.items, group_id=app.embedder_group)
    try:
        async with app.publisher() as publisher, app.ledger() as ledger:
            embedder = Embedder(encoder, store, RunChannel(ledger=ledger, publisher=publisher, topics=app.topics))
            await embedder.prepare()
            guard = DeletionGuard(store, app.deletion_budget())
            completion = RunCompletion(
                RunChannel(ledger=ledger, publisher=publisher, topics=app.topics), consumer.committed, guard
            )
            member = EmbeddingConsumer(
                consumer, embedder, BatchOptions(poll_timeout_ms=100, **batching), on_commit=completion.wake
            )
            await consumer.start()
            stop = asyncio.Event()
            consuming = asyncio.create_task(member.run(stop))
            completing = asyncio.create_task(completion.run(stop))
            async with (
                CoordinatorServer(DemoCoordinator(40)) as coordinator,
                fetcher_running(app, coordinator.endpoint) as fetcher,
            ):
                yield Member(app, consumer, member, publisher, ledger, [fetcher, consuming, completing])
            stop.set()
            await asyncio.gather(consuming, completing)
    finally:
        await consumer.stop()


async def test_qdrant_unreachable_commits_nothing_and_resumes_when_back(
    settings: Settings, encoder: TextEncoder
) -> None:
    store = FlakyStore.open(settings.qdrant_path, settings.qdrant_collection)
    assert isinstance(store, FlakyStore)
    store.down = True
    try:
        async with member_running(settings, store, encoder, max_batch=16, retry_max_seconds=0.5) as running:
            syncing = asyncio.create_task(running.sync())
            async with asyncio.timeout(60):
                while running.member.ready or store.refused < 3:
                    await asyncio.sleep(0.1)
            assert "Qdrant unreachable" in (running.member.last_error or "")
            consumer = running.consumer
            committed = [await consumer.committed(tp) for tp in consumer.assignment()]
            assert committed and all(offset is None for offset in committed)
            outage_ended = time.monotonic()
            store.down = False
            run = await syncing
            recovered = time.monotonic() - outage_ended
        points = store.count()
    finally:
        store.close()
    assert (run.status, run.items_upserted, points) == ("succeeded", 40, 40)
    assert running.member.ready and recovered < 10


class BuildingStore(EdgeStore):
    """The real embedded store; `build` holds it the way an index build does: every call waits until it ends."""

    def build(self, seconds: float) -> None:
        with self._lock:
            self.busy = "building the search index (injected)"
            time.sleep(seconds)
            self.busy = None


@pytest.mark.parametrize("partitions", ["paused", "left unpaused by a rebalance"])
async def test_a_batch_held_past_the_max_poll_interval_keeps_its_member_in_the_group(
    settings: Settings, encoder: TextEncoder, partitions: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings.model_copy(update={"kafka_max_poll_interval_ms": 3000})
    store = BuildingStore.open(settings.qdrant_path, settings.qdrant_collection)
    assert isinstance(store, BuildingStore)
    failed_commits = REGISTRY.get_sample_value("ragsync_commit_failures_total") or 0.0
    try:
        async with member_running(settings, store, encoder, max_batch=8, keepalive_seconds=1) as running:
            if partitions != "paused":
                # The keep-alive polls then return the items that arrived meanwhile; they must be delivered again.
                monkeypatch.setattr(running.consumer, "pause", lambda *partitions: None)
            building = asyncio.create_task(asyncio.to_thread(store.build, 8))
            run = await running.sync()
            await building
        points = store.count()
    finally:
        store.close()
    assert (run.status, run.items_upserted, points) == ("succeeded", 40, 40)
    # Dropped from the group, the member's commit would fail and its batch be delivered again.
    assert REGISTRY.get_sample_value("ragsync_commit_failures_total") == failed_commits
    assert run.started_at and run.finished_at and (run.finished_at - run.started_at).total_seconds() > 5


async def test_the_coordinator_down_for_twenty_seconds_is_retried_through(
    settings: Settings, store: VectorStore, encoder: TextEncoder
) -> None:
    from ragsync.messaging.local_broker import free_port

    settings = settings.model_copy(
        update={
            "batch_sync_limit": 10,
            "coordinator_max_attempts": 12,
            "coordinator_backoff_initial": 0.5,
            "coordinator_backoff_max": 4.0,
        }
    )
    app = App(settings)
    await app.ensure_topics()
    servicer = DemoCoordinator(100, Faults(latency_s=0.1))
    address = f"127.0.0.1:{free_port()}"
    server = CoordinatorServer(servicer, address)
    await server.start()
    async with (
        app.ledger() as ledger,
        fetcher_running(app, address) as fetcher,
        embedders_running(app, store, encoder) as embedders,
    ):
        request = await request_sync(app, "assessment-service")
        await until_pages(ledger, request.run_id, 3)
        await server.stop()
        await asyncio.sleep(20)
        pages_while_down = ledger.book.runs[request.run_id].pages
        server = CoordinatorServer(servicer, address)
        await server.start()
        [run] = await ledger.wait([request.run_id], 60, guard=[fetcher, embedders])
    await server.stop()
    assert pages_while_down < 10
    assert (run.status, run.pages, run.items_upserted) == ("succeeded", 10, 100)


async def test_a_page_over_the_message_limit_fails_its_run_naming_the_setting_and_the_fetcher_serves_the_next(
    settings: Settings,
) -> None:
    limit = 4 * 1024 * 1024  # the least COORDINATOR_MAX_MESSAGE_BYTES takes
    app = App(settings.model_copy(update={"coordinator_max_message_bytes": limit}))
    await app.ensure_topics()
    oversized = json.dumps({"data": [{"id": str(n), "title": "x" * 1000} for n in range(limit // 1000)]})
    assert len(oversized) > limit
    small = json.dumps({"data": [{"id": "a", "title": "kept"}]})
    async with (
        app.ledger() as ledger,
        scripted_coordinator([(oversized, {}), (small, {"has_more": "false"})]) as (endpoint, coordinator),
        fetcher_running(app, endpoint) as fetcher,
    ):
        first = await request_sync(app, "payment-service")
        [failed] = await ledger.wait([first.run_id], 60, guard=[fetcher])
        second = await request_sync(app, "payment-service")
        async with asyncio.timeout(60):  # every page fetched: the fetcher served it (no embedder runs here)
            while (served := ledger.book.get(second.run_id)) is None or not served.fetch_done:
                await asyncio.sleep(0.05)
    assert failed.status == "failed" and failed.error is not None
    assert "payment-service page 1: Coordinator answered RESOURCE_EXHAUSTED (not retryable)" in failed.error
    assert f"the page is over COORDINATOR_MAX_MESSAGE_BYTES={limit}" in failed.error
    assert (served.status, served.pages, served.items_fetched) == ("embedding", 1, 1)
    assert coordinator.calls == 2  # the oversized page was asked for once, not retried
