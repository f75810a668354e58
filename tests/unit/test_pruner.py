"""The pruner as a stage: a succeeded full run in the run state, the points it did not see removed from the store.
The embedder writes the points, as in production, into the in-memory store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ragsync.events import FetchProgress, RunEnded, RunPruned, SyncType, TenantRequest
from ragsync.streams.pruner import Pruner
from tests.unit.doubles import TOPICS, EmbeddingStage


class PruningStage(EmbeddingStage):
    """The embedder writing the points, as in production, and the pruner after it."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.pruner = Pruner(self.store, self.ledger, self.publisher)

    async def sync(self, items: list[str], sync_type: SyncType = "batch") -> TenantRequest:
        """A run that fetched `items`, stored by the embedder, and ended succeeded."""
        request = TenantRequest(service="payment-service", tenant_id="acme", sync_type=sync_type)
        self.ledger.record(FetchProgress.begin(request).model_copy(update={"status": "fetched"}))
        events = [self.item(item_id, f"payment {item_id}", run_id=request.run_id) for item_id in items]
        await self.embedder.process(events, "member-a")
        self.ledger.record(RunEnded(run_id=request.run_id, tenant_id="acme", service="payment-service"))
        return request


@pytest.fixture
async def stage(tmp_path: Path) -> AsyncIterator[PruningStage]:
    async with PruningStage(tmp_path) as made:
        yield made


async def test_a_succeeded_full_run_prunes_what_it_did_not_see_once(stage: PruningStage) -> None:
    await stage.sync(["p-1", "p-2", "p-3"])
    second = await stage.sync(["p-1", "p-3"])  # p-2 is gone upstream
    run = stage.ledger.book.get(second.run_id)
    assert run is not None and run.status == "succeeded" and run.full
    removed = await stage.pruner.prune(run)
    assert removed == 1 and stage.store.count() == 2
    [pruned] = [r for r in stage.publisher.on(TOPICS.sync_runs) if isinstance(r, RunPruned)]
    assert (pruned.run_id, pruned.pruned) == (second.run_id, 1)
    assert stage.ledger.book.get(second.run_id).pruned == 1  # type: ignore[union-attr]


async def test_only_succeeded_full_runs_are_pruned_and_each_once(stage: PruningStage) -> None:
    full = await stage.sync(["p-1", "p-2"])
    await stage.sync(["p-1"], sync_type="incremental")  # sees a part only: never prunes
    stop = asyncio.Event()
    pruning = asyncio.create_task(stage.pruner.run(stop))
    async with asyncio.timeout(10):
        while not any(isinstance(r, RunPruned) for r in stage.publisher.on(TOPICS.sync_runs)):
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.6)  # a further round: nothing more is pruned
    stop.set()
    await pruning
    pruned = [r for r in stage.publisher.on(TOPICS.sync_runs) if isinstance(r, RunPruned)]
    assert [(r.run_id, r.pruned) for r in pruned] == [(full.run_id, 0)]
    assert stage.store.count() == 2
