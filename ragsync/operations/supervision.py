"""Supervision: a stage that raises is logged with its traceback, counted, shown on /readyz, and restarted with
backoff. One that keeps crashing takes its process down, so that Kubernetes or compose restarts it. No component
sits alive with a dead stage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from ragsync.errors import RunError
from ragsync.operations import metrics

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class Restarts:
    """How crashed stages are restarted: backoff, and how many crashes in how long end the process."""

    max_crashes: int = 5
    window_s: float = 600.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0


class StageCrashLoopError(RunError):
    """A stage crashed `max_crashes` times within `window_s`, or hit a fault no restart can mend: the process must
    stop and be restarted by its supervisor (the CLI exits 3). The message names the component, the stage and the
    last error; each crash was logged with its traceback."""


class UnrecoverableStageError(RunError):
    """A fault that restarting the stage cannot mend (its state is gone from under it): the process stops at once,
    and starts again from what is kept. The message says what was lost and to restart."""


class Supervisor:
    """Runs one component's stages, restarting each that crashes."""

    def __init__(self, component: str, restarts: Restarts) -> None:
        self.component = component
        self._restarts = restarts
        self.down: dict[str, str] = {}  # stage -> why it is not running
        self.gave_up: StageCrashLoopError | None = None
        self.gave_up_event = asyncio.Event()  # set once a stage crashed too often: the process must stop

    async def run(self, stage: str, start: Callable[[], Awaitable[object]], stop: asyncio.Event) -> None:
        """Run `start()` until it returns or `stop` is set, restarting it after each unexpected exception."""
        crashes: deque[float] = deque()
        delay = self._restarts.backoff_initial_s
        while not stop.is_set():
            try:
                await start()
                return
            except UnrecoverableStageError as error:
                self._crashed(stage, error, crashes, fatal=True)
            except Exception as error:  # noqa: BLE001 - any crash of a stage is supervised: logged, counted, restarted
                self._crashed(stage, error, crashes)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
            delay = min(delay * 2, self._restarts.backoff_max_s)
            self.down.pop(stage, None)
            if not stop.is_set():
                log.warning("%s: restarting the %s stage", self.component, stage)

    def _crashed(self, stage: str, error: Exception, crashes: deque[float], fatal: bool = False) -> None:
        now = time.monotonic()
        crashes.append(now)
        while crashes and crashes[0] < now - self._restarts.window_s:
            crashes.popleft()
        reason = f"{type(error).__name__}: {error}"
        self.down[stage] = f"crashed ({reason}); restarting"
        metrics.STAGE_CRASHES.labels(self.component, stage).inc()
        count, window = len(crashes), self._restarts.window_s
        log.error("%s: the %s stage crashed (%d in %.0f s)", self.component, stage, count, window, exc_info=error)
        if fatal:
            self.gave_up = StageCrashLoopError(f"the {self.component}'s {stage} stage cannot go on: {error}")
        elif count >= self._restarts.max_crashes:
            self.gave_up = StageCrashLoopError(
                f"the {self.component}'s {stage} stage crashed {count} times within {window:.0f} s "
                f"(STAGE_MAX_CRASHES={self._restarts.max_crashes}); last: {reason}"
            )
        if self.gave_up is not None:
            self.gave_up_event.set()
            raise self.gave_up from error

    async def run_stages(self, stages: Mapping[str, Callable[[], Awaitable[object]]], stop: asyncio.Event) -> None:
        """Run each stage under supervision until `stop` is set. Once any stage of this supervisor (these, or
        one started elsewhere, such as the run ledger's follower) gives up, cancel the rest and raise
        `StageCrashLoopError`."""
        tasks = [asyncio.ensure_future(self.run(name, start, stop)) for name, start in stages.items()]
        try:
            await self.until_stopped(stop)
        finally:
            if self.gave_up is not None:
                for task in tasks:
                    task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def until_stopped(self, stop: asyncio.Event) -> None:
        """Wait until `stop` is set; raise `StageCrashLoopError` at once if a stage crashed too often meanwhile
        (for stages run by another framework, whose crash would otherwise leave the process idle)."""
        waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self.gave_up_event.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        if self.gave_up is not None:
            raise self.gave_up

    async def check(self) -> str | None:
        """The readiness check: which stages are down, and why."""
        if not self.down:
            return None
        return "; ".join(f"{stage} {why}" for stage, why in sorted(self.down.items()))


async def unless_stopped(work: Awaitable[T], stop: asyncio.Event, timeout: float | None = None) -> T | None:
    """What `work` gives, or None as soon as `stop` is set or `timeout` has passed (`work` is then cancelled).

    For a stage's waits (a poll, a queue, a wake-up): a stage that waits them out stops that much later, and a
    one-shot sync waits for its slowest stage to stop."""
    task = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait({task, stopping}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    return task.result() if task in done else None
