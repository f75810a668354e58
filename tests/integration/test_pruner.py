"""The pruner after a full run: points the run did not see are deleted, then the search index is built (in a
child process, while the embedder goes on answering)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client import REGISTRY

from ragsync.app import App, store_check
from ragsync.runs import RunState
from ragsync.settings import Settings
from ragsync.store import Point, point_id
from ragsync.store.edge import EdgeStore
from streams.pruner import Pruner


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


def _full_run(seen: set[str]) -> RunState:
    return RunState("run-1", "t", "s", fetched_ids=seen, started_at=datetime.now(UTC) + timedelta(seconds=1))


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
            pruner = Pruner(store, ledger, publisher, app.topics)
            removed = await pruner.prune(_full_run({"kept"}))
            assert removed == 1 and store.count() == 1
            assert pruner.last_index_error is not None and "index build failed (injected)" in pruner.last_index_error
            assert builds() == {**before, "failed": before["failed"] + 1}
            store.OPTIMIZE = EdgeStore.OPTIMIZE  # the next full run's build goes through
            store.upsert(_points(["new"]))
            assert await pruner.prune(_full_run({"kept", "new"})) == 0
            assert pruner.last_index_error is None
            assert store.search([1.0, 0.0, 0.0], 1)[0].payload["item_id"] == "kept"
            assert await pruner.prune(_full_run({"kept", "new"})) == 0  # nothing written since the last build
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
