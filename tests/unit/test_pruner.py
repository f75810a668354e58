"""A run's deletions as stages: the completion counts and judges them against the deletion budget, the pruner
carries out those allowed and those a person confirmed. The embedder writes and marks the points, as in
production, into the in-memory store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import TopicPartition

from ragsync.errors import Refused
from ragsync.events import (
    Cursor,
    Deletion,
    DeletionConfirmed,
    FetchProgress,
    RunEnded,
    RunPruned,
    RunRecord,
    SyncType,
    TenantRequest,
)
from ragsync.runstate.deletions import DeletionBudget, DeletionGuard, PruneConfirmations, held_error, refusal
from ragsync.runstate.runs import RunBook, RunState
from ragsync.store import StoreError, point_id
from ragsync.store.base import DeletionScope
from ragsync.streams.completion import RunCompletion
from ragsync.streams.pruner import Pruner
from tests.unit.doubles import TOPICS, EmbeddingStage, channel

SERVICE = "payment-service"


async def _all_committed(tp: TopicPartition) -> int | None:
    return 10**9


class PruningStage(EmbeddingStage):
    """The embedder writing and marking the points, the completion judging each run's deletions, the pruner
    carrying them out."""

    def __init__(self, folder: Path, budget: DeletionBudget) -> None:
        super().__init__(folder)
        guard = DeletionGuard(self.store, budget)
        self.pruner = Pruner(self.store, channel(self.ledger, self.publisher), guard)
        self.completion = RunCompletion(channel(self.ledger, self.publisher), _all_committed, guard)

    async def sync(
        self, items: list[str], sync_type: SyncType = "batch", deleted: tuple[str, ...] = (), prune: bool = True
    ) -> RunState:
        """A run that fetched `items` (those in `deleted` flagged deleted), stored by the embedder, then ended by
        the completion, its deletions carried out by the pruner when allowed (and `prune`: else left to the
        pruner's own loop)."""
        request = TenantRequest(service=SERVICE, tenant_id="acme", sync_type=sync_type)
        fetched = FetchProgress.begin(request).model_copy(update={"status": "fetched", "produced": len(items)})
        self.ledger.record(fetched)
        events = [
            self.item(item_id, f"payment {item_id}", "delete" if item_id in deleted else "upsert", request.run_id)
            for item_id in items
        ]
        await self.embedder.process(events, "member-a")
        await self.completion.check()
        run = self.run(request.run_id)
        if run.deletion_pending and prune:
            await self.pruner.prune(run)
        return self.run(request.run_id)

    def run(self, run_id: str) -> RunState:
        """The run as the ledger knows it."""
        run = self.ledger.book.get(run_id)
        assert run is not None
        return run

    def pruned(self) -> list[RunPruned]:
        """The pruner's records."""
        return [r for r in self.publisher.on(TOPICS.sync_runs) if isinstance(r, RunPruned)]


@pytest.fixture
async def stage(tmp_path: Path) -> AsyncIterator[PruningStage]:
    async with PruningStage(tmp_path, DeletionBudget(max_share=0.3, min_hold=3)) as made:
        yield made


ITEMS = [f"p-{n}" for n in range(10)]


async def test_a_shrink_under_the_budget_is_swept_and_counted_apart_from_deletes(stage: PruningStage) -> None:
    await stage.sync(ITEMS)
    run = await stage.sync(ITEMS[:8], deleted=("p-7",))  # p-8 and p-9 are gone upstream, p-7 flagged deleted
    assert (run.status, run.swept, run.deleted, run.held) == ("succeeded", 2, 1, None)
    assert stage.store.count() == 7
    [first, second] = stage.pruned()
    assert (second.run_id, second.pruned, second.deleted) == (run.run_id, 2, 1)
    assert (first.pruned, first.deleted) == (0, 0)
    assert run.summary()["swept"] == 2 and run.summary()["deleted"] == 1


async def test_an_empty_full_answer_is_held_and_deletes_nothing(stage: PruningStage) -> None:
    await stage.sync(ITEMS)
    run = await stage.sync([])
    assert run.status == "held" and run.end is not None and run.end.status == "failed"
    assert run.held == Deletion(swept=10, deleted=0, points=10)
    assert stage.store.count() == 10 and stage.pruned()[1:] == []
    assert run.error is not None and run.error.startswith("held: this full run would remove 10 of the 10 points")
    assert "an empty answer to a full sync" in run.error and f"ragsync prune {run.run_id} --confirm" in run.error
    assert stage.ledger.book.held() == [run] and run.summary()["held"]["swept"] == 10


async def test_paging_cut_short_is_held_over_the_share(stage: PruningStage) -> None:
    await stage.sync(ITEMS)
    run = await stage.sync(ITEMS[:3])
    assert run.status == "held" and run.held == Deletion(swept=7, deleted=0, points=10)
    assert "70% > RUN_MAX_DELETE_SHARE 30%" in (run.error or "") and stage.store.count() == 10


async def test_every_record_flagged_deleted_is_held_and_its_points_stay(stage: PruningStage) -> None:
    await stage.sync(ITEMS)
    run = await stage.sync(ITEMS, deleted=tuple(ITEMS))
    assert run.status == "held" and run.held == Deletion(swept=0, deleted=10, points=10) and run.deleted == 10
    assert stage.store.count() == 10


async def test_a_small_service_shrinks_under_the_floor(tmp_path: Path) -> None:
    async with PruningStage(tmp_path, DeletionBudget(max_share=0.3, min_hold=100)) as stage:
        await stage.sync(ITEMS)
        run = await stage.sync(ITEMS[:3])  # 70 %, but 7 points are under RUN_MIN_DELETE_HOLD
        assert (run.status, run.swept, stage.store.count()) == ("succeeded", 7, 3)


async def test_a_share_of_0_holds_every_deletion_and_1_none(tmp_path: Path) -> None:
    for folder in ("0", "1"):
        (tmp_path / folder).mkdir()
    async with PruningStage(tmp_path / "0", DeletionBudget(max_share=0, min_hold=100)) as strict:
        await strict.sync(ITEMS)
        run = await strict.sync(ITEMS[1:])
        assert (run.status, run.held, strict.store.count()) == ("held", Deletion(swept=1, points=10), 10)
        unchanged = await strict.sync(ITEMS[1:], sync_type="incremental")  # deletes nothing: nothing to hold
        assert unchanged.status == "succeeded"
    async with PruningStage(tmp_path / "1", DeletionBudget(max_share=1, min_hold=0)) as off:
        await off.sync(ITEMS)
        run = await off.sync([])
        assert (run.status, run.swept, off.store.count()) == ("succeeded", 10, 0)


async def test_a_confirmation_carries_out_exactly_the_held_deletion(stage: PruningStage) -> None:
    await stage.sync(ITEMS)
    held = await stage.sync(ITEMS[:2], deleted=("p-1",))
    assert held.held == Deletion(swept=8, deleted=1, points=10)
    later = await stage.sync(["p-1", "p-9"], sync_type="incremental")  # seen again since: no longer to delete
    assert later.status == "succeeded"
    pruning = asyncio.create_task(stage.pruner.run(stop := asyncio.Event()))
    confirmations = PruneConfirmations(channel(stage.ledger, stage.publisher))
    done = await confirmations.confirm(confirmations.held_run(held.run_id[:8], "runs"), "cli", timeout=10)
    stop.set()
    await pruning
    assert done is not None and done.status == "succeeded" and done.error is None
    assert (done.swept, done.prune and done.prune.deleted) == (7, 0)  # p-9 and p-1 were seen again
    assert _kept(stage) == ["p-0", "p-1", "p-9"]
    cursor = stage.ledger.book.cursors[("acme", SERVICE)]
    assert cursor.last_full is not None and cursor.last_full.run_id == held.run_id
    with pytest.raises(Refused, match="confirmed and carried out already"):
        confirmations.held_run(held.run_id, "runs")


async def test_a_confirmation_is_refused_after_a_newer_full_run(stage: PruningStage) -> None:
    await stage.sync(ITEMS)
    held = await stage.sync([])
    newer = await stage.sync(ITEMS)
    assert newer.status == "succeeded"
    problem = refusal(stage.run(held.run_id))
    assert problem is not None and f"a newer full run ({newer.run_id})" in problem and "Sync again" in problem
    with pytest.raises(Refused, match="holds no deletion"):
        PruneConfirmations(channel(stage.ledger, stage.publisher)).held_run(newer.run_id, "runs")
    pruning = asyncio.create_task(stage.pruner.run(stop := asyncio.Event()))
    stage.ledger.record(DeletionConfirmed(run_id=held.run_id, tenant_id="acme", service=SERVICE))  # late, or forged
    await asyncio.sleep(0.3)
    stop.set()
    await pruning
    assert stage.store.count() == 10 and len(stage.pruned()) == 2  # the two full runs' own, none for the held one


async def test_a_held_run_a_newer_full_run_superseded_no_longer_waits(stage: PruningStage) -> None:
    await stage.sync(ITEMS)
    held = await stage.sync([])
    assert stage.ledger.book.held() == [held]
    newer = await stage.sync(ITEMS)
    for book in (stage.ledger.book, _read_back(stage, cursors_first=True)):
        run = book.get(held.run_id)
        assert run is not None and run.status == "superseded" and book.held() == []
        assert run.error is not None and f"a newer full run ({newer.run_id})" in run.error
        assert run.summary()["superseded_by"] == newer.run_id and run.summary()["held"]["swept"] == 10


def _read_back(stage: PruningStage, cursors_first: bool) -> RunBook:
    """A new book from everything written to the run-state topic, the cursors first if asked (compaction may
    leave a cursor ahead of the records of the runs it passed)."""
    records = [r for r in stage.publisher.on(TOPICS.sync_runs) if isinstance(r, RunRecord | Cursor)]
    book = RunBook()
    for record in sorted(records, key=lambda r: not isinstance(r, Cursor)) if cursors_first else records:
        book.apply(record)
    return book


async def test_a_pruner_restarted_after_a_crash_carries_out_the_deletion_it_crashed_on(
    stage: PruningStage, monkeypatch: pytest.MonkeyPatch
) -> None:
    await stage.sync(ITEMS)
    remove = stage.store.remove
    failures = iter([StoreError("injected: Qdrant unreachable")])

    def failing_once(scope: DeletionScope) -> dict[str, Deletion]:
        if (failure := next(failures, None)) is not None:
            raise failure
        return remove(scope)

    monkeypatch.setattr(stage.store, "remove", failing_once)
    stop = asyncio.Event()
    crashed = asyncio.create_task(stage.pruner.run(stop))
    run = await stage.sync(ITEMS[:8], prune=False)
    with pytest.raises(StoreError):
        await asyncio.wait_for(crashed, 5)
    assert run.deletion_pending and stage.store.count() == 10

    restarted = asyncio.create_task(stage.pruner.run(stop))  # as the supervisor restarts it
    async with asyncio.timeout(5):
        while stage.run(run.run_id).pruned is None:
            await asyncio.sleep(0.01)
    stop.set()
    await restarted
    assert stage.run(run.run_id).swept == 2 and stage.store.count() == 8


def _kept(stage: PruningStage) -> list[str]:
    stored = stage.store.stored([point_id("acme", SERVICE, item) for item in ITEMS])
    return [item for item in ITEMS if point_id("acme", SERVICE, item) in stored]


def test_the_budget_holds_over_the_share_never_under_the_floor() -> None:
    budget = DeletionBudget(max_share=0.3, min_hold=100)
    assert not budget.holds(Deletion(swept=99, points=100), empty_full_answer=False)
    assert budget.holds(Deletion(swept=100, points=300), empty_full_answer=False)
    assert not budget.holds(Deletion(swept=90, deleted=10, points=400), empty_full_answer=False)
    assert budget.holds(Deletion(swept=5, points=5), empty_full_answer=True)
    assert not budget.holds(Deletion(points=5), empty_full_answer=True)
    assert DeletionBudget(max_share=0).holds(Deletion(deleted=1, points=1000), empty_full_answer=False)
    assert not DeletionBudget(max_share=1).holds(Deletion(swept=1000, points=1000), empty_full_answer=True)


def test_the_held_error_names_what_the_coordinator_answered() -> None:
    request = TenantRequest(service="hidden-items", tenant_id="default-tenant")
    fetched = FetchProgress.begin(request).model_copy(
        update={"status": "fetched", "pages": 1, "last_page": "page 1: 0 records, has_more false"}
    )
    run = RunState(request.run_id, "default-tenant", "hidden-items", fetch=fetched)
    run.apply(RunEnded(run_id=request.run_id, tenant_id="default-tenant", service="hidden-items"))
    error = held_error(run, {"default-tenant": Deletion(swept=300, points=300)}, DeletionBudget())
    assert error == (
        "held: this full run would remove 300 of the 300 points of hidden-items/default-tenant (100% > "
        "RUN_MAX_DELETE_SHARE 30%, an empty answer to a full sync; 300 it did not see, 0 of records flagged "
        "deleted); nothing was deleted; the Coordinator answered 1 pages, 0 records, the last page 1: 0 records, "
        f"has_more false; if those records really went away upstream, run ragsync prune {request.run_id} --confirm"
    )


async def test_a_forged_succeeded_run_over_the_budget_deletes_nothing(stage: PruningStage) -> None:
    await stage.sync(ITEMS)
    request = TenantRequest(service=SERVICE, tenant_id="acme")  # a full run that fetched nothing, ended as a
    stage.ledger.record(FetchProgress.begin(request).model_copy(update={"status": "fetched"}))
    stage.ledger.record(RunEnded(run_id=request.run_id, tenant_id="acme", service=SERVICE))  # success by hand
    run = stage.run(request.run_id)
    assert run.deletion_pending and run.status == "succeeded"
    assert await stage.pruner.prune(run) is None
    assert stage.store.count() == 10 and len(stage.pruned()) == 1  # the first run's own record alone
