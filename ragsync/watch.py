"""Following sync runs live, from the sync-runs topic, until they finish."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from ragsync.events import RunProgress
from ragsync.runs import RunBook, RunState

log = logging.getLogger(__name__)


class RunTimeoutError(TimeoutError):
    """Runs that did not finish in time; names each one and where it stood."""

    def __init__(self, runs: list[RunState], seconds: float) -> None:
        self.runs = runs
        stuck = "; ".join(
            f"{r.service} ({r.run_id[:8]}) {r.status}: {r.items_settled}/{r.items_fetched} items" for r in runs
        )
        super().__init__(f"{len(runs)} run(s) did not finish within {seconds:.0f}s: {stuck}")


class ComponentStoppedError(RuntimeError):
    """A stage that should keep running ended while runs were being waited for."""

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        cause = task.exception() if not task.cancelled() else None
        super().__init__(f"the {task.get_name()} stopped while runs were in progress: {cause!r}")


class RunWatcher:
    """Reads progress events of chosen runs. Start it before publishing the requests it should follow."""

    def __init__(self, consumer: AIOKafkaConsumer, topic: str) -> None:
        self._consumer = consumer
        self._topic = topic
        self.book = RunBook()

    async def start(self) -> None:
        """Attach to every partition at its end: only events from now on are read."""
        await self._consumer.start()
        partitions = self._consumer.partitions_for_topic(self._topic) or set()
        self._consumer.assign([TopicPartition(self._topic, p) for p in sorted(partitions)])
        await self._consumer.seek_to_end()

    async def stop(self) -> None:
        """Disconnect."""
        await self._consumer.stop()

    async def wait(
        self,
        run_ids: Iterable[str],
        timeout: float,
        on_change: Callable[[RunState], None] = lambda run: None,
        guard: Sequence[asyncio.Task[Any]] = (),
    ) -> list[RunState]:
        """Fold events until every run in `run_ids` finished.

        Raises `RunTimeoutError` past `timeout` seconds, and `ComponentStoppedError` as soon as one of the
        `guard` tasks (the stages doing the work) ends, instead of waiting for a run that cannot finish.
        """
        order = list(run_ids)
        wanted = set(order)
        deadline = time.monotonic() + timeout
        while not self._all_finished(wanted):
            stopped = [task for task in guard if task.done()]
            if stopped:
                raise ComponentStoppedError(stopped[0])
            if time.monotonic() > deadline:
                raise RunTimeoutError([self._state(r) for r in wanted if not self._state(r).finished], timeout)
            batch = await self._consumer.getmany(timeout_ms=250)
            for message in (m for records in batch.values() for m in records):
                try:
                    event = RunProgress.model_validate_json(message.value or b"")
                except ValidationError as error:
                    log.error(
                        "unreadable progress event at %s[%d]@%d: %s",
                        message.topic,
                        message.partition,
                        message.offset,
                        error,
                    )
                    continue
                if event.run_id in wanted:
                    on_change(self.book.apply(event))
            await asyncio.sleep(0)
        return [self.book.runs[r] for r in order]

    def _state(self, run_id: str) -> RunState:
        return self.book.runs.get(run_id) or RunState(run_id, "?", "?")

    def _all_finished(self, wanted: set[str]) -> bool:
        return all(r in self.book.runs and self.book.runs[r].finished for r in wanted)
