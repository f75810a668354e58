"""Stages that crash inside a running component are restarted (fault injection: each stage's loop is patched to
raise once), and the work goes on."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import REGISTRY

from producers.watchdog import Watchdog
from ragsync.app import App
from ragsync.demo.coordinator import CoordinatorServer, DemoCoordinator
from ragsync.settings import Settings
from ragsync.store import VectorStore
from streams.completion import RunCompletion
from streams.model import TextEncoder
from streams.pruner import Pruner
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
