"""Supervised stages: a crash is counted, shown and restarted with backoff; a crash loop gives up."""

import asyncio

import pytest
from prometheus_client import REGISTRY

from ragsync.operations.supervision import (
    Restarts,
    StageCrashLoopError,
    Supervisor,
    UnrecoverableStageError,
    unless_stopped,
)

FAST = Restarts(max_crashes=3, window_s=60, backoff_initial_s=0.01, backoff_max_s=0.05)


def _crashes(stage: str) -> float:
    return REGISTRY.get_sample_value("ragsync_stage_crashes_total", {"component": "test", "stage": stage}) or 0.0


async def test_a_crashed_stage_is_shown_down_then_restarted_until_it_ends() -> None:
    supervisor = Supervisor("test", Restarts(max_crashes=3, backoff_initial_s=0.2))
    calls, seen_down = 0, []
    before = _crashes("flaky")

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise ValueError(f"boom {calls}")

    async def watch() -> None:
        while calls < 3:
            seen_down.append(await supervisor.check())
            await asyncio.sleep(0.05)

    await asyncio.gather(supervisor.run("flaky", flaky, asyncio.Event()), watch())
    assert calls == 3 and _crashes("flaky") == before + 2
    assert "flaky crashed (ValueError: boom 1); restarting" in seen_down
    assert await supervisor.check() is None and supervisor.gave_up is None


async def test_a_stage_that_keeps_crashing_gives_up_and_stops_its_process() -> None:
    supervisor = Supervisor("test", FAST)

    async def broken() -> None:
        raise RuntimeError("always")

    with pytest.raises(StageCrashLoopError, match="the test's broken stage crashed 3 times within 60 s"):
        await supervisor.run("broken", broken, asyncio.Event())
    assert supervisor.gave_up_event.is_set()
    with pytest.raises(StageCrashLoopError):
        await supervisor.until_stopped(asyncio.Event())


async def test_stop_ends_the_backoff_and_a_stage_that_returns_is_done() -> None:
    supervisor = Supervisor("test", Restarts(backoff_initial_s=30))
    stop = asyncio.Event()

    async def once() -> None:
        stop.set()
        raise RuntimeError("crashed while stopping")

    await asyncio.wait_for(supervisor.run("once", once, stop), 5)  # no 30 s wait, no restart
    await asyncio.wait_for(supervisor.until_stopped(stop), 1)


async def test_an_unrecoverable_fault_gives_up_at_once_and_run_stages_cancels_the_other_stages() -> None:
    supervisor = Supervisor("test", FAST)
    stop, cancelled = asyncio.Event(), asyncio.Event()

    async def healthy() -> None:
        try:
            await stop.wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def state_lost() -> None:
        raise UnrecoverableStageError("its topic was deleted")

    before = _crashes("lost")
    background = asyncio.ensure_future(supervisor.run("lost", state_lost, stop))  # as the run ledger's follower
    with pytest.raises(StageCrashLoopError, match="the test's lost stage cannot go on: its topic was deleted"):
        await asyncio.wait_for(supervisor.run_stages({"healthy": healthy}, stop), 5)
    assert cancelled.is_set() and _crashes("lost") == before + 1  # once: no restart
    with pytest.raises(StageCrashLoopError):
        await background


async def test_run_stages_returns_when_stopped() -> None:
    supervisor, stop = Supervisor("test", FAST), asyncio.Event()

    async def stops_the_component() -> None:
        stop.set()

    await asyncio.wait_for(supervisor.run_stages({"a": stops_the_component, "b": stop.wait}, stop), 5)
    assert supervisor.gave_up is None


async def test_unless_stopped_gives_the_result_or_none_at_stop_or_timeout_and_cancels_the_wait() -> None:
    stop = asyncio.Event()
    assert await unless_stopped(asyncio.sleep(0, result="polled"), stop) == "polled"
    queue: asyncio.Queue[str] = asyncio.Queue()
    assert await unless_stopped(queue.get(), stop, timeout=0.01) is None
    asyncio.get_running_loop().call_later(0.01, stop.set)
    assert await unless_stopped(queue.get(), stop) is None
    queue.put_nowait("kept")  # the cancelled gets took nothing
    assert queue.get_nowait() == "kept"
