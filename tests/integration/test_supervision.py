"""Stages that crash inside a running component are restarted (fault injection: each stage's loop is patched to
raise once), and the work goes on."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import REGISTRY

from ragsync.app.application import App
from ragsync.demo.coordinator_server import CoordinatorServer, DemoCoordinator
from ragsync.model.encoder import TextEncoder
from ragsync.operations.supervision import Restarts, StageCrashLoopError, Supervisor
from ragsync.runstate.ledger import RunLedger
from ragsync.settings import Settings
from ragsync.store import VectorStore
from ragsync.streams.completion import RunCompletion
from ragsync.streams.pruner import Pruner
from ragsync.streams.watchdog import Watchdog
from tests.integration.conftest import request_sync
from tests.integration.test_correctness import pipeline


def _crashes(component: str, stage: str) -> float:
    labels = {"component": component, "stage": stage}
    return REGISTRY.get_sample_value("ragsync_stage_crashes_total", labels) or 0.0


def _crash_once(monkeypatch: pytest.MonkeyPatch, cls: Any, method: str) -> list[int]:
    """Make `cls.method` raise on its first call; the list counts the calls."""
    original, calls = getattr(cls, method), []

    async def crashing(self: Any, *args: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError(f"injected: {cls.__name__}.{method} crashed")
        return await original(self, *args)

    monkeypatch.setattr(cls, method, crashing)
    return calls


async def test_the_embedders_pruner_and_completion_stages_are_restarted_and_the_run_completes(
    settings: Settings, store: VectorStore, encoder: TextEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = {stage: _crashes("embedder", stage) for stage in ("pruner", "completion")}
    pruner_calls = _crash_once(monkeypatch, Pruner, "run")
    completion_calls = _crash_once(monkeypatch, RunCompletion, "run")
    async with (
        CoordinatorServer(DemoCoordinator(40)) as coordinator,
        pipeline(App(settings), coordinator.endpoint, store, encoder) as running,
    ):
        run = await running.sync("payment-service")
        run = await running.until_pruned(run.run_id)
    assert (run.status, run.items_upserted, run.pruned) == ("succeeded", 40, 0)
    assert len(pruner_calls) == 2 and len(completion_calls) == 2
    assert {stage: _crashes("embedder", stage) - before[stage] for stage in before} == {"pruner": 1, "completion": 1}


async def test_the_schedulers_watchdog_is_restarted(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings.model_copy(update={"watchdog_interval": 0.1, "batch_sync_enabled": False})
    before = _crashes("scheduler", "watchdog")
    calls = _crash_once(monkeypatch, Watchdog, "check")
    stop = asyncio.Event()
    scheduler = asyncio.create_task(App(settings).run_scheduler(stop))
    async with asyncio.timeout(30):
        while len(calls) < 3:
            await asyncio.sleep(0.05)
    stop.set()
    await scheduler
    assert _crashes("scheduler", "watchdog") == before + 1


async def test_a_run_state_topic_deleted_under_running_components_stops_them_loudly_and_a_restart_recovers(
    settings: Settings, store: VectorStore, encoder: TextEncoder
) -> None:
    app = App(settings)
    before = {c: _crashes(c, "run ledger") for c in ("fetcher", "embedder")}
    async with CoordinatorServer(DemoCoordinator(40)) as coordinator:
        stop = asyncio.Event()
        components = [
            asyncio.create_task(app.run_fetcher(stop, coordinator.endpoint)),
            asyncio.create_task(app.run_embedders(stop, 1, store, encoder)),
        ]
        async with app.ledger() as ledger:
            request = await request_sync(app, "payment-service")
            [run] = await ledger.wait([request.run_id], 120, guard=components)
            assert (run.status, run.items_upserted) == ("succeeded", 40)
            admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
            await admin.start()
            try:
                await admin.delete_topics([app.topics.sync_runs])
            finally:
                await admin.close()
            done, _ = await asyncio.wait(components, timeout=30)
        stop.set()
        assert len(done) == 2, "a component kept running on a deleted run-state topic"
        for task in components:
            with pytest.raises(StageCrashLoopError, match=f"run-state topic {app.topics.sync_runs} was deleted"):
                task.result()
        assert {c: _crashes(c, "run ledger") - before[c] for c in before} == {"fetcher": 1, "embedder": 1}

        # Restarted, the components create the topic again and sync; the store kept every item.
        async with pipeline(app, coordinator.endpoint, store, encoder) as running:
            again = await running.sync("payment-service")
    assert (again.status, again.items_skipped) == ("succeeded", 40)


async def test_a_crashed_run_ledger_follower_is_restarted_and_reads_on(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = App(settings)
    await app.ensure_topics()
    calls = _crash_once(monkeypatch, RunLedger, "_follow")
    supervisor = Supervisor("test", Restarts(backoff_initial_s=0.05))
    before = _crashes("test", "run ledger")
    async with app.ledger(supervisor=supervisor) as ledger:
        request = await request_sync(app, "payment-service")
        await ledger.caught_up()
        assert ledger.book.get(request.run_id) is not None
    assert len(calls) == 2 and _crashes("test", "run ledger") == before + 1
