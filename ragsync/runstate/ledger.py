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
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from ragsync.events import STATE_RECORD, Cursor, RunRecord
from ragsync.keys import parse_key
from ragsync.messaging.kafka import Publisher, TopicBehind, assign_all, fresh_partitions, start_client, unread
from ragsync.operations import metrics
from ragsync.operations.supervision import Supervisor
from ragsync.runstate.runs import RunBook, RunState
from ragsync.runstate.runstate_errors import ComponentStoppedError, RunStateLostError, RunTimeoutError

log = logging.getLogger(__name__)
ROUND_RECORDS = 500  # records folded per round: bounds the decoded records held at once
# How often the follower checks that the run-state topic is still the one it read: a fresh metadata request for
# every topic (asking for one topic by name could make a broker auto-create it), so not too often on a big cluster.
TOPIC_CHECK_S = 15.0


class RunLedger:
    """Reads every progress event and keeps the `RunBook` up to date."""

    def __init__(self, consumer: AIOKafkaConsumer, topic: str, from_beginning: bool = True) -> None:
        self._consumer = consumer
        self._topic = topic
        self._from_beginning = from_beginning
        self._partitions: list[TopicPartition] = []
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._round_done = asyncio.Condition()
        self.book = RunBook()
        self.listeners: list[Callable[[RunState], None]] = []
        self.older_records = 0  # records of an older event version, skipped
        self._older_reported = 0
        self._read_to: dict[int, int] = {}  # partition -> the offset after the last record folded
        self._checked_at = time.monotonic()

    async def start(self, supervisor: Supervisor | None = None) -> None:
        """Attach to every partition (at its start, or its end) and follow in the background: under the
        component's `supervisor` when given (a crash is restarted where it stood; a lost topic stops the
        process), else as a plain task whose end `caught_up` and `wait` report."""
        await start_client(self._consumer)
        self._partitions = await assign_all(self._consumer, self._topic, self._from_beginning)
        if supervisor is None:
            self._task = asyncio.create_task(self._follow(), name="run ledger")
        else:
            following = supervisor.run("run ledger", self._follow, self._stopping)
            self._task = asyncio.create_task(following, name="run ledger")

    async def stop(self) -> None:
        """Stop following and disconnect."""
        if self._task is not None:
            self._stopping.set()
            self._task.cancel()
            # A follower that ended with an error was reported by its supervisor (or by `caught_up`/`wait`).
            await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()

    async def _follow(self) -> None:
        while True:
            # Short rounds: every wait for a run polls at this pace.
            batch = await self._consumer.getmany(timeout_ms=50, max_records=ROUND_RECORDS)
            for message in (m for records in batch.values() for m in records):
                self._apply(message.key, message.value, message.partition, message.offset)
                self._read_to[message.partition] = message.offset + 1
            if not batch:
                self._report_older()
            if time.monotonic() - self._checked_at > TOPIC_CHECK_S:
                await self._check_topic()
            async with self._round_done:
                self._round_done.notify_all()

    async def _check_topic(self) -> None:
        """Raise `RunStateLostError` when the topic is gone, has other partitions, or ends before what was read;
        attach to it if it appeared since the start. An unreachable broker is not a loss: the readiness check
        reports it."""
        self._checked_at = time.monotonic()
        try:
            async with asyncio.timeout(TOPIC_CHECK_S):
                partitions = await fresh_partitions(self._consumer, self._topic)
        except (KafkaError, TimeoutError):
            return
        if not self._partitions:
            if partitions:  # created after this ledger started (a fresh broker): read it from its start
                self._partitions = await assign_all(self._consumer, self._topic)
            return
        if partitions is None:
            raise RunStateLostError(self._topic, "was deleted")
        if partitions != {tp.partition for tp in self._partitions}:
            raise RunStateLostError(self._topic, f"now has {len(partitions)} partitions, not {len(self._partitions)}")
        for partition, read_to in self._read_to.items():
            highwater = self._consumer.highwater(TopicPartition(self._topic, partition))
            if highwater is not None and highwater < read_to:
                raise RunStateLostError(
                    self._topic, f"was recreated (partition {partition} ends at {highwater}, {read_to} were read)"
                )

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
            self.book.forget(parsed.run_id, parsed.tenant_id, parsed.service)
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
        # Bounded: a follower that died notifies no one, and the callers check for that between rounds.
        async with self._round_done:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._round_done.wait(), timeout=1.0)

    async def lag(self) -> int | None:
        """Events published but not read yet; None before the first fetch."""
        return await unread(self._consumer, self._partitions)

    async def caught_up(self, timeout: float = 30.0) -> None:
        """Return once every event published before this call has been folded."""
        if self._task is None:  # not following a topic: it knows what was folded into it, and nothing more
            return
        self._check_alive()
        called_ms = int(time.time() * 1000)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    await self._next_round()
                    # High-water marks count only from fetches answered after the call: an answer already on its
                    # way (or in the buffer) may predate the last event, and would make a lag of zero a lie.
                    if self._answered_since(called_ms) and await self.lag() == 0:
                        return
        except TimeoutError as error:
            raise TopicBehind(self._topic, timeout) from error

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
        deletions: bool = True,
    ) -> list[RunState]:
        """Wait until every run in `run_ids` is done (finished, and unless `deletions` is false, its deletions
        carried out when it may make any), calling `on_change` on each change.

        Raises `RunTimeoutError` past `timeout` seconds, and `ComponentStoppedError` as soon as one of the
        `guard` tasks (the stages doing the work) ends, instead of waiting for a run that cannot finish.
        """
        order = list(run_ids)
        wanted = set(order)

        def ended(run: RunState) -> bool:
            return run.done if deletions else run.finished

        def relay(run: RunState) -> None:
            if run.run_id in wanted:
                on_change(run)

        self.listeners.append(relay)
        deadline = time.monotonic() + timeout
        try:
            while not all((run := self.book.get(r)) is not None and ended(run) for r in wanted):
                stopped = [task for task in guard if task.done()]
                if stopped:
                    raise ComponentStoppedError(stopped[0])
                self._check_alive()
                if time.monotonic() > deadline:
                    unfinished = [self.book.get(r) or RunState(r, "?", "?") for r in order]
                    raise RunTimeoutError([r for r in unfinished if not ended(r)], timeout)
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
