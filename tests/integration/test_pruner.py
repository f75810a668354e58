"""The pruner after a full run: points the run did not see are deleted, then the search index is built (in a
child process, while the embedder goes on answering)."""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import REGISTRY

from ragsync.app.application import App
from ragsync.app.health import store_check
from ragsync.events import Deletion, FetchProgress, RunEnded, SyncRequest
from ragsync.runstate.channel import RunChannel
from ragsync.runstate.deletions import DeletionGuard
from ragsync.runstate.runs import RunState
from ragsync.settings import Settings
from ragsync.store import Point, VectorStore, point_id
from ragsync.store.edge_store import EdgeStore
from ragsync.streams.pruner import Pruner

RUN_NUMBERS = itertools.count(1)


class BrokenIndexStore(EdgeStore):
    """The real embedded store, whose index build fails in its child process (fault injection)."""

    OPTIMIZE = "raise SystemExit('index build failed (injected)')"


def _points(ids: list[str]) -> list[Point]:
    synced = datetime.now(UTC).isoformat()
    return [
        Point(
            point_id("t", "s", i),
            [1.0, float(n), 0.0],
            {"tenant_id": "t", "service": "s", "item_id": i, "synced_at": synced},
        )
        for n, i in enumerate(ids)
    ]


def _full_run(store: VectorStore, seen: set[str], service: str = "s") -> RunState:
    """A succeeded full run that saw `seen`: their points carry its generation, as the embedder leaves them."""
    run_id = f"run-{next(RUN_NUMBERS)}"
    started = datetime.now(UTC)
    store.touch([point_id("t", service, i) for i in sorted(seen)], run_id, started.timestamp() + 1)
    request = SyncRequest(run_id=run_id, tenant_id="t", service=service, sync_type="batch")
    run = RunState(run_id, "t", service)
    fetched = FetchProgress(
        run_id=run_id,
        tenant_id="t",
        service=service,
        request=request,
        status="fetched",
        started_at=started,
        produced=len(seen),  # what it saw came as item events: not an empty answer, which is always held
    )
    run.apply(fetched)
    run.apply(RunEnded(run_id=run_id, tenant_id="t", service=service))
    return run


async def test_index_builds_are_counted_by_outcome_and_a_failure_is_reported(
    settings: Settings, tmp_path: Path
) -> None:
    store = BrokenIndexStore.open(tmp_path / "q", "items")
    store.ensure_collection(3, "m")
    store.upsert(_points(["kept", "gone"]))
    app = App(settings)
    await app.ensure_topics()
    outcomes = ("failed", "built", "skipped")

    def builds() -> dict[str, float]:
        return {o: REGISTRY.get_sample_value("ragsync_index_builds_total", {"outcome": o}) or 0.0 for o in outcomes}

    before = builds()
    try:
        async with app.publisher() as publisher, app.ledger() as ledger:
            pruner = Pruner(
                store,
                RunChannel(ledger=ledger, publisher=publisher, topics=app.topics),
                DeletionGuard(store, app.deletion_budget()),
            )
            removed = await pruner.prune(_full_run(store, {"kept"}))
            assert removed is not None and removed.swept == 1 and store.count() == 1
            assert pruner.last_index_error is not None and "index build failed (injected)" in pruner.last_index_error
            assert builds() == {**before, "failed": before["failed"] + 1}
            store.OPTIMIZE = EdgeStore.OPTIMIZE  # the next full run's build goes through
            store.upsert(_points(["new"]))
            assert await pruner.prune(_full_run(store, {"kept", "new"})) == Deletion(points=2)
            assert pruner.last_index_error is None
            assert store.search([1.0, 0.0, 0.0], 1)[0].payload["item_id"] == "kept"
            # A run of a service with no points touches and deletes nothing: nothing written since the last build.
            assert await pruner.prune(_full_run(store, set(), service="empty")) == Deletion()
            assert builds() == {o: before[o] + 1 for o in outcomes}
    finally:
        store.close()


class SlowIndexStore(EdgeStore):
    """The real embedded store, whose index build takes three seconds (fault injection)."""

    OPTIMIZE = "import time; time.sleep(3)"


async def test_the_store_check_answers_at_once_while_the_index_is_built(tmp_path: Path) -> None:
    store = SlowIndexStore.open(tmp_path / "q", "items")
    store.ensure_collection(3, "m")
    store.upsert(_points(["a"]))
    check = store_check(store)
    try:
        building = asyncio.create_task(asyncio.to_thread(store.optimize))
        async with asyncio.timeout(10):
            while store.busy is None:
                await asyncio.sleep(0.01)
        started = time.perf_counter()
        problem = await check()
        assert problem is not None and "building the search index of items" in problem
        assert time.perf_counter() - started < 1
        await building
        assert await check() is None and store.count() == 1
    finally:
        store.close()
