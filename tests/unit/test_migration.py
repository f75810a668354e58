"""A model change's switch, judged like a deletion: the new collection must not hold fewer of a service's points
than the one searches see by more than the budget allows. The in-memory store, an unfed ledger; no broker."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from ragsync.events import Cursor, RunMark
from ragsync.messaging.sync_requests import RequestDefaults
from ragsync.runstate.deletions import DeletionBudget
from ragsync.runstate.ledger import RunLedger
from ragsync.store import Point, StoreError, point_id
from ragsync.store.client_store import ClientStore
from ragsync.streams.migration import ModelMigration
from tests.unit.doubles import TOPICS, KeptPublisher, channel, unfed_ledger

SERVICE = "payment-service"


def _fill(store: ClientStore, count: int) -> None:
    store.upsert(
        [Point(point_id("default-tenant", SERVICE, f"p-{n}"), [1.0, 0.0, 0.0, 0.0], _payload(n)) for n in range(count)]
    )


def _payload(n: int) -> dict[str, object]:
    return {"tenant_id": "default-tenant", "service": SERVICE, "item_id": f"p-{n}", "chunk": 0}


def _full_run(ledger: RunLedger, name: str) -> None:
    """A full run of the service that succeeded just now, as its cursor says."""
    now = datetime.now(UTC)
    mark = RunMark(run_id=name, sync_type="batch", started_at=now, finished_at=now + timedelta(seconds=1))
    ledger.record(Cursor(tenant_id="default-tenant", service=SERVICE, last_success=mark, last_full=mark))


async def test_a_new_collection_a_short_answer_left_nearly_empty_is_not_switched_to() -> None:
    store = ClientStore.memory("ragsync")
    store.ensure_collection(4, "old-model")
    _fill(store, 200)
    old = store.live_collection()
    assert store.ensure_collection(4, "new-model")  # a model change: searches stay on the old collection
    ledger = unfed_ledger()
    budget = DeletionBudget(max_share=0.3, min_hold=100)
    migration = ModelMigration(RequestDefaults(services=(SERVICE,)), store, channel(ledger, KeptPublisher()), budget)
    stop = asyncio.Event()
    running = asyncio.create_task(migration.run(stop))

    _fill(store, 20)  # the Coordinator cut the full sync short: 20 of 200
    _full_run(ledger, "short-run")
    await asyncio.sleep(1.5)
    assert store.live_collection() == old and not migration.done
    assert migration.held is not None and migration.held.service == SERVICE
    assert "holds 20 items of payment-service against 200" in migration.held.reason
    assert "RUN_MAX_DELETE_SHARE=1" in migration.held.reason

    _fill(store, 200)  # answered in full again: the next full run is judged afresh
    _full_run(ledger, "full-run")
    async with asyncio.timeout(5):
        await running
    assert migration.done and migration.held is None and store.live_collection() != old
    assert store.count(service=SERVICE) == 200


async def test_a_judgement_that_failed_is_made_again_when_the_stage_restarts(monkeypatch: pytest.MonkeyPatch) -> None:
    store = ClientStore.memory("ragsync")
    store.ensure_collection(4, "old-model")
    _fill(store, 200)
    old = store.live_collection()
    store.ensure_collection(4, "new-model")
    ledger, publisher = unfed_ledger(), KeptPublisher()
    budget = DeletionBudget(max_share=0.3, min_hold=100)
    migration = ModelMigration(RequestDefaults(services=(SERVICE,)), store, channel(ledger, publisher), budget)
    _full_run(ledger, "empty-run")  # answered empty: the new collection holds nothing
    items = store.items
    failures = iter([StoreError("injected: Qdrant timed out")])

    def failing_once(service: str, collection: str) -> int:
        if (failure := next(failures, None)) is not None:
            raise failure
        return items(service, collection)

    monkeypatch.setattr(store, "items", failing_once)
    with pytest.raises(StoreError):
        await migration.run(asyncio.Event())
    restarted = asyncio.create_task(migration.run(stop := asyncio.Event()))  # as the supervisor restarts it
    await asyncio.sleep(0.3)
    assert migration.held is not None and store.live_collection() == old
    assert len(publisher.on(TOPICS.sync_requests)) == 1  # the full syncs were requested once, not per restart
    stop.set()
    await restarted
