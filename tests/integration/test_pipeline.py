"""The whole data path with real parts: broker, faust fetcher agent, demo Coordinator, model, embedded Qdrant."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from ragsync.app import options
from ragsync.app.application import App
from ragsync.demo.coordinator_server import CoordinatorServer, DemoCoordinator, Faults
from ragsync.demo.records import demo_record
from ragsync.events import DeadLetter, SyncRequest
from ragsync.items import item_id_of
from ragsync.messaging.kafka import make_consumer
from ragsync.model.encoder import TextEncoder
from ragsync.runstate.channel import RunChannel
from ragsync.runstate.deletions import DeletionGuard
from ragsync.settings import Settings
from ragsync.store import VectorStore, point_id
from ragsync.streams.completion import RunCompletion
from ragsync.streams.embedder import BatchOptions, Embedder, EmbeddingConsumer
from tests.integration.conftest import embedders_running, fetcher_running, read_all


def expected_ids(services: list[str], count: int, tenant: str = "default-tenant") -> set[str]:
    return {point_id(tenant, s, item_id_of(demo_record(s, i), s)) for s in services for i in range(count)}


async def _publish_raw(client: str, bootstrap_servers: str, topic: str, value: bytes) -> None:
    """Publish one message as a client of another team would: aiokafka, or librdkafka (confluent-kafka)."""
    if client == "aiokafka":
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers)
        await producer.start()
        await producer.send_and_wait(topic, value)
        await producer.stop()
        return
    from confluent_kafka import Producer

    librdkafka = Producer({"bootstrap.servers": bootstrap_servers})
    librdkafka.produce(topic, value)
    assert await asyncio.to_thread(librdkafka.flush, 30) == 0, "librdkafka did not deliver the request"


@pytest.mark.parametrize("client", ["aiokafka", "librdkafka"])
async def test_raw_json_request_from_a_plain_producer_is_synced(
    settings: Settings, store: VectorStore, encoder: TextEncoder, client: str
) -> None:
    app = App(settings)
    await app.ensure_topics()
    async with (
        app.ledger() as watcher,
        CoordinatorServer(DemoCoordinator(items_per_service=120)) as coordinator,
        fetcher_running(app, coordinator.endpoint) as fetcher,
        embedders_running(app, store, encoder) as embedders,
    ):
        raw = b'{"service": "assessment-service", "run_id": "raw-run-1", "tenant_id": "acme"}'
        await _publish_raw(client, app.bootstrap_servers, app.topics.sync_requests, raw)
        [run] = await watcher.wait(["raw-run-1"], timeout=90, guard=[fetcher, embedders])
    assert (run.status, run.service, run.tenant_id) == ("succeeded", "assessment-service", "acme")
    assert (run.pages, run.items_fetched, run.items_upserted, run.dead_lettered) == (3, 120, 120, 0)
    assert store.count(tenant_id="acme", service="assessment-service") == 120
    assert store.retrieve_ids(sorted(expected_ids(["assessment-service"], 120, "acme"))) == expected_ids(
        ["assessment-service"], 120, "acme"
    )


async def test_two_consumers_in_one_group_share_the_work_and_every_item_lands_once(
    settings: Settings, store: VectorStore, encoder: TextEncoder
) -> None:
    services, per_service = ["payment-service", "devlab-service"], 150
    app = App(settings)
    await app.ensure_topics()
    consumers = [make_consumer(app.kafka, app.topics.items, group_id=app.embedder_group) for _ in range(2)]
    async with app.publisher() as publisher, app.ledger(prompt=False) as ledger:
        embedder = Embedder(encoder, store, RunChannel(ledger=ledger, publisher=publisher, topics=app.topics))
        await embedder.prepare()
        guard = DeletionGuard(store, app.deletion_budget())
        completion = RunCompletion(
            RunChannel(ledger=ledger, publisher=publisher, topics=app.topics), consumers[0].committed, guard
        )
        members = [
            EmbeddingConsumer(c, embedder, BatchOptions(max_batch=32, poll_timeout_ms=200), on_commit=completion.wake)
            for c in consumers
        ]
        await asyncio.gather(*(c.start() for c in consumers))
        stop = asyncio.Event()
        tasks = [asyncio.create_task(m.run(stop)) for m in members] + [asyncio.create_task(completion.run(stop))]
        async with asyncio.timeout(60):
            while not all(len(c.assignment()) == 2 for c in consumers):
                await asyncio.sleep(0.2)
        async with (
            app.ledger() as watcher,
            CoordinatorServer(DemoCoordinator(per_service)) as coordinator,
            fetcher_running(app, coordinator.endpoint) as fetcher,
        ):
            requests = [SyncRequest(service=s, tenant_id="default-tenant") for s in services]
            for request in requests:
                await publisher.send(app.topics.sync_requests, request.service, request)
            await publisher.flush()
            # This wiring runs no pruner: the runs' deletions are not waited for.
            runs = await watcher.wait([r.run_id for r in requests], 120, guard=[fetcher, *tasks], deletions=False)
        stop.set()
        await asyncio.gather(*tasks)
        assignments = [c.assignment() for c in consumers]
        await asyncio.gather(*(c.stop() for c in consumers))

    assert all(run.status == "succeeded" for run in runs)
    assert not assignments[0] & assignments[1], "a partition was assigned to both consumers"
    assert all(m.items_processed > 0 for m in members), [m.items_processed for m in members]
    expected = expected_ids(services, per_service)
    assert store.count() == len(expected) == 300
    assert store.retrieve_ids(sorted(expected)) == expected
    # Offsets are committed up to the end of every partition: nothing would be redelivered.
    check = AIOKafkaConsumer(bootstrap_servers=app.bootstrap_servers, group_id=app.embedder_group)
    await check.start()
    partitions = [TopicPartition(app.topics.items, p) for p in range(settings.kafka_partitions)]
    committed = [await check.committed(tp) or 0 for tp in partitions]
    await check.stop()
    assert sum(committed) == sum(m.items_processed for m in members) == 300


async def test_a_failing_service_fails_its_run_loudly_and_the_others_go_on(
    settings: Settings, store: VectorStore, encoder: TextEncoder
) -> None:
    app = App(settings.model_copy(update={"coordinator_max_attempts": 2}))
    await app.ensure_topics()
    async with (
        app.ledger() as watcher,
        CoordinatorServer(DemoCoordinator(20)) as coordinator,
        fetcher_running(app, coordinator.endpoint) as fetcher,
        embedders_running(app, store, encoder) as embedders,
    ):
        good = SyncRequest(service="analytics-service")
        bad = SyncRequest(service="unknown-service")
        async with app.publisher() as publisher:
            for request in (bad, good):
                await publisher.send(app.topics.sync_requests, request.service, request)
        failed, succeeded = await watcher.wait([bad.run_id, good.run_id], timeout=90, guard=[fetcher, embedders])
    assert failed.status == "failed"
    assert failed.error is not None and "unknown-service page 1" in failed.error and "NOT_FOUND" in failed.error
    assert (succeeded.status, succeeded.items_upserted) == ("succeeded", 20)


async def test_retryable_faults_on_every_other_call_still_complete(
    settings: Settings, store: VectorStore, encoder: TextEncoder
) -> None:
    app = App(settings)
    await app.ensure_topics()
    servicer = DemoCoordinator(200, Faults(error_rate=0.3, seed=3))
    async with (
        app.ledger() as watcher,
        CoordinatorServer(servicer) as coordinator,
        fetcher_running(app, coordinator.endpoint) as fetcher,
        embedders_running(app, store, encoder) as embedders,
    ):
        request = SyncRequest(service="payment-service")
        async with app.publisher() as publisher:
            await publisher.send(app.topics.sync_requests, request.service, request)
        [run] = await watcher.wait([request.run_id], timeout=90, guard=[fetcher, embedders])
    assert (run.status, run.pages, run.items_upserted) == ("succeeded", 4, 200)
    assert servicer.faults.injected >= 1, "no fault was injected"
    assert len(servicer.calls) == 4 + servicer.faults.injected


async def test_a_malformed_request_is_dead_lettered_with_the_field_named(settings: Settings) -> None:
    app = App(settings)
    await app.ensure_topics()
    async with CoordinatorServer(DemoCoordinator(5)) as coordinator, fetcher_running(app, coordinator.endpoint):
        producer = AIOKafkaProducer(bootstrap_servers=app.bootstrap_servers)
        await producer.start()
        await producer.send_and_wait(app.topics.sync_requests, b'{"service": "payment-service", "servce": 1}')
        await producer.stop()
        [value] = await read_all(app.bootstrap_servers, app.topics.dead_letters, 1)
    letter = DeadLetter.model_validate_json(value)
    assert letter.stage == "fetcher" and "servce=1" in letter.reason
    assert json.loads(letter.original) == {"service": "payment-service", "servce": 1}


async def _run_scheduler(settings: Settings, requests_expected: int) -> tuple[Any, list[SyncRequest]]:
    """Run a scheduler until it published `requests_expected` requests (or for half a second if none)."""
    from ragsync.producers.scheduler import Scheduler

    app = App(settings)
    await app.ensure_topics()
    stop = asyncio.Event()
    async with app.run_channel() as channel:
        scheduler = Scheduler(options.schedule_plan(settings), options.request_defaults(settings), channel)
        task = asyncio.create_task(scheduler.run(stop))
        if requests_expected:
            values = await read_all(app.bootstrap_servers, app.topics.sync_requests, requests_expected)
        else:
            values = []
            await asyncio.sleep(0.5)
        stop.set()
        await task
    return scheduler, [SyncRequest.model_validate_json(v) for v in values]


async def test_startup_trigger_publishes_a_request_per_service(settings: Settings) -> None:
    services = ["payment-service", "devlab-service"]
    settings = settings.model_copy(update={"batch_sync_on_startup": True, "batch_sync_services": services})
    scheduler, requests = await _run_scheduler(settings, 2)
    assert sorted(r.service for r in requests) == sorted(services)
    assert {r.trigger for r in requests} == {"startup"}
    assert {r.tenant_id for r in requests} == {"default-tenant"}
    assert scheduler.state.next_run is not None and scheduler.state.runs_requested == 2


async def test_disabled_scheduler_publishes_nothing(settings: Settings) -> None:
    settings = settings.model_copy(update={"batch_sync_on_startup": True, "batch_sync_enabled": False})
    scheduler, _ = await _run_scheduler(settings, 0)
    assert scheduler.state.runs_requested == 0 and not scheduler.state.enabled
