"""Tenants are a boundary: a run whose records name their own tenants is counted exactly and ends; a run id is
honoured only for the tenant and service it was first seen with."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ragsync.events import DeadLetter, EmbedProgress, FetchProgress, RunQueued, SyncRequest, TenantCounts, TenantRequest
from ragsync.runstate.runs import RunBook
from tests.unit.doubles import TOPICS, EmbeddingStage
from tests.unit.test_fetcher_agent import _agent


@pytest.fixture
async def stage(tmp_path: Path) -> AsyncIterator[EmbeddingStage]:
    async with EmbeddingStage(tmp_path) as made:
        yield made


async def test_a_run_whose_records_name_three_tenants_is_counted_exactly_and_settles(stage: EmbeddingStage) -> None:
    request = TenantRequest(service="payment-service", tenant_id="default-tenant")
    stage.ledger.record(FetchProgress.begin(request).model_copy(update={"status": "fetched", "produced": 6}))
    named = [("a-1", "acme"), ("a-2", "acme"), ("g-1", "globex"), ("i-1", "initech"), ("d-1", "default-tenant")]
    events = [
        stage.item(
            item,
            f"record {item}",
            run_id=request.run_id,
            tenant_id=tenant,
            run_tenant_id=("default-tenant" if tenant != "default-tenant" else None),
        )
        for item, tenant in named
    ]
    await stage.embedder.process(events[:3], "member-a")
    gone = stage.item("g-2", None, "delete", request.run_id, "globex", "default-tenant")
    await stage.embedder.process([*events[3:], gone], "member-a")
    reports = [r for r in stage.publisher.on(TOPICS.sync_runs) if isinstance(r, EmbedProgress)]
    assert {r.tenant_id for r in reports} == {"default-tenant"}  # one run, one key per member: nothing replaced
    run = stage.ledger.book.get(request.run_id)
    assert run is not None and (run.items_upserted, run.deleted, run.items_settled) == (5, 1, 6)
    assert run.settled_by_count
    assert run.tenant_counts() == {
        "default-tenant": TenantCounts(upserted=1),
        "acme": TenantCounts(upserted=2),
        "globex": TenantCounts(upserted=1, deleted=1),
        "initech": TenantCounts(upserted=1),
    }
    assert run.summary()["tenants"]["globex"] == {
        "upserted": 1,
        "skipped": 0,
        "deleted": 1,
        "dead_lettered": 0,
        "swept": 0,
    }
    assert [stage.store.count(tenant_id=t) for t in ("acme", "initech", "default-tenant")] == [2, 1, 1]


def test_a_reused_run_id_never_takes_over_the_run_it_names() -> None:
    book = RunBook()
    mine = SyncRequest(run_id="r1", tenant_id="acme", service="payment-service")
    book.apply(RunQueued(run_id="r1", tenant_id="acme", service="payment-service", request=mine))
    theirs = SyncRequest(run_id="r1", tenant_id="globex", service="payment-service")
    assert book.apply(RunQueued(run_id="r1", tenant_id="globex", service="payment-service", request=theirs)) is None
    run = book.get("r1")
    assert run is not None and run.request == mine
    book.forget("r1", "globex", "payment-service")  # the reused id's tombstone
    assert book.get("r1") is run
    book.forget("r1", "acme", "payment-service")
    assert book.get("r1") is None


async def test_a_request_reusing_another_tenants_run_id_is_dead_lettered_with_the_reason() -> None:
    agent, runner, publisher, ledger = _agent()
    first = TenantRequest(run_id="r1", tenant_id="acme", service="payment-service")
    ledger.record(FetchProgress.begin(first))
    reused = SyncRequest(run_id="r1", tenant_id="globex", service="payment-service")
    await agent.handle(reused, "globex/payment-service")
    assert runner.fetched == []
    [(topic, _, letter)] = publisher.sent
    assert topic == TOPICS.dead_letters and isinstance(letter, DeadLetter)
    assert "belongs to a run of acme/payment-service" in letter.reason and "globex/payment-service" in letter.reason
    assert ledger.book.get("r1") is not None and ledger.book.runs["r1"].tenant_id == "acme"
