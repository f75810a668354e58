"""The run ledger: the run-state topic (sync-runs) folded into a `RunBook`, kept current in the background.

Run state lives in the topic, not in any one process, so every component that starts a ledger from the
beginning of the topic knows every kept run after a restart: the fetcher resumes from its checkpoint, the
watchdog sees stalled runs, `/status` and `ragsync status` show the same table. The topic is compacted and
finished runs expire, so reading it is bounded by the runs kept, not by the items ever synced.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from ragsync import metrics
from ragsync.events import STATE_RECORD, Cursor, RunRecord
from ragsync.kafka import Publisher, assign_all, unread
from ragsync.keys import parse_key
from ragsync.runs import RunBook, RunState

log = logging.getLogger(__name__)
ROUND_RECORDS = 500  # records folded per round: bounds the decoded records held at once


class RunTimeoutError(TimeoutError):
    """Runs that did not finish in time; names each one and where it stood."""

    def __init__(self, runs: list[RunState], seconds: float) -> None:
        self.runs = runs
        stuck = "; ".join(
            f"{r.service} ({r.run_id[:8]}) {r.status}: {r.items_upserted}/{r.items_fetched} items" for r in runs
        )
        super().__init__(f"{len(runs)} run(s) did not finish within {seconds:.0f}s: {stuck}")


class ComponentStoppedError(RuntimeError):
    """A stage that should keep running ended while runs were being waited for."""

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        cause = task.exception() if not task.cancelled() else None
        super().__init__(f"the {task.get_name()} stopped while runs were in progress: {cause!r}")


class RunLedger:
    """Reads every progress event and keeps the `RunBook` up to date."""

    def __init__(self, consumer: AIOKafkaConsumer, topic: str, from_beginning: bool = True) -> None:
        self._consumer = consumer
        self._topic = topic
        self._from_beginning = from_beginning
        self._partitions: list[TopicPartition] = []
        self._task: asyncio.Task[None] | None = None
        self._round_done = asyncio.Condition()
        self.book = RunBook()
        self.listeners: list[Callable[[RunState], None]] = []
        self.older_records = 0  # records of an older event version, skipped
        self._older_reported = 0

    async def start(self) -> None:
        """Attach to every partition (at its start, or its end) and follow in the background."""
        await self._consumer.start()
        self._partitions = await assign_all(self._consumer, self._topic, self._from_beginning)
        self._task = asyncio.create_task(self._follow(), name="run ledger")

    async def stop(self) -> None:
        """Stop following and disconnect."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()

    async def _follow(self) -> None:
        while True:
            # Short rounds: every wait for a run polls at this pace.
            batch = await self._consumer.getmany(timeout_ms=50, max_records=ROUND_RECORDS)
            for message in (m for records in batch.values() for m in records):
                self._apply(message.key, message.value, message.partition, message.offset)
            if not batch:
                self._report_older()
            async with self._round_done:
                self._round_done.notify_all()

    def _apply(self, key: bytes | None, value: bytes | None, partition: int, offset: int) -> None:
        where = f"{self._topic}[{partition}]@{offset}"
        if value is None:
            self._remove(key, where)
            return
        try:
            record = STATE_RECORD.validate_json(value)
        except ValidationError as error:
            if _version(value) == 1:
                self.older_records += 1  # a RunProgress event of before the keyed run state: reported in one line
                return
            metrics.UNREADABLE_EVENTS.labels(topic="sync-runs").inc()
            log.error("unreadable run-state record at %s skipped: %s", where, error)
            return
        self.record(record)

    async def publish(self, publisher: Publisher, *records: RunRecord | Cursor) -> None:
        """Publish records to the run-state topic under their keys, wait for the broker (with whatever else the
        publisher holds), then fold them here at once."""
        for record in records:
            await publisher.send(self._topic, record.key, record)
        await publisher.flush()
        for record in records:
            self.record(record)

    def record(self, record: RunRecord | Cursor) -> None:
        """Fold a record this process just published (and the broker acknowledged) without waiting to read it
        back: a later batch counts on from it. Reading it again changes nothing."""
        run = self.book.apply(record)
        if run is not None:
            for listener in self.listeners:
                listener(run)

    def _remove(self, key: bytes | None, where: str) -> None:
        """A tombstone: the run (or cursor) it names expired."""
        parsed = parse_key(key)
        if parsed is None:
            log.error("tombstone with an unknown key %r at %s skipped", key, where)
        elif parsed.run_id is not None:
            self.book.forget(parsed.run_id)
        else:
            self.book.cursors.pop((parsed.tenant_id, parsed.service), None)

    def _report_older(self) -> None:
        if self.older_records > self._older_reported:
            log.warning(
                "skipped %d run events of an older ragsync version on %s (item-id lists, before the keyed run "
                "state); runs they describe are not shown. They expire with the topic's data, or delete the topic",
                self.older_records - self._older_reported,
                self._topic,
            )
            self._older_reported = self.older_records

    async def _next_round(self) -> None:
        async with self._round_done:
            await self._round_done.wait()

    async def lag(self) -> int | None:
        """Events published but not read yet; None before the first fetch."""
        return await unread(self._consumer, self._partitions)

    async def caught_up(self, timeout: float = 30.0) -> None:
        """Return once every event published before this call has been folded."""
        self._check_alive()
        called_ms = int(time.time() * 1000)
        async with asyncio.timeout(timeout):
            while True:
                await self._next_round()
                # High-water marks count only from fetches answered after the call: an answer already on its way
                # (or in the buffer) may predate the last event, and would make a lag of zero a lie.
                if self._answered_since(called_ms) and await self.lag() == 0:
                    return

    def _answered_since(self, ms: int) -> bool:
        return all((self._consumer.last_poll_timestamp(tp) or 0) > ms for tp in self._partitions)

    def _check_alive(self) -> None:
        if self._task is not None and self._task.done():
            raise ComponentStoppedError(self._task)

    async def wait(
        self,
        run_ids: Iterable[str],
        timeout: float,
        on_change: Callable[[RunState], None] = lambda run: None,
        guard: Sequence[asyncio.Task[Any]] = (),
    ) -> list[RunState]:
        """Wait until every run in `run_ids` finished, calling `on_change` on each change.

        Raises `RunTimeoutError` past `timeout` seconds, and `ComponentStoppedError` as soon as one of the
        `guard` tasks (the stages doing the work) ends, instead of waiting for a run that cannot finish.
        """
        order = list(run_ids)
        wanted = set(order)

        def relay(run: RunState) -> None:
            if run.run_id in wanted:
                on_change(run)

        self.listeners.append(relay)
        deadline = time.monotonic() + timeout
        try:
            while not all((run := self.book.get(r)) is not None and run.finished for r in wanted):
                stopped = [task for task in guard if task.done()]
                if stopped:
                    raise ComponentStoppedError(stopped[0])
                self._check_alive()
                if time.monotonic() > deadline:
                    unfinished = [self.book.get(r) or RunState(r, "?", "?") for r in order]
                    raise RunTimeoutError([r for r in unfinished if not r.finished], timeout)
                await self._next_round()
        finally:
            self.listeners.remove(relay)
        return [self.book.runs[r] for r in order]


def _version(value: bytes) -> object:
    """The `v` of a JSON object, or None."""
    try:
        data = json.loads(value)
    except ValueError:
        return None
    return data.get("v") if isinstance(data, dict) else None
