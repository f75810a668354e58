"""The embedding group's lag, measured from the broker by the scheduler: alive when the embedders are not.

Each embedder knew only its own partitions, and only after its own commits, so its lag froze while the embedders
stalled or were down: exactly when the lag alert matters. The scheduler instead reads, every LAG_INTERVAL_S, the
items topic's high-water marks and the group's committed offsets, as a client that never joins the group, and
exports the difference per partition, partitions without a live member included.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from ragsync.messaging.kafka import fresh_partitions
from ragsync.operations import metrics

log = logging.getLogger(__name__)
MEASURE_TIMEOUT_S = 10.0
FETCH_TRIES = 5
FETCH_WAIT_MS = 200


class GroupLag:
    """The lag of consumer group `group` on `topic`, read with `consumer`: a started client with that group id
    that subscribes to nothing, so it reads the group's commits without ever joining it."""

    def __init__(self, consumer: AIOKafkaConsumer, group: str, topic: str) -> None:
        self._consumer = consumer
        self._group = group
        self._topic = topic
        self.last_error: str | None = None
        self.last_lag: dict[int, int] = {}

    async def measure(self) -> dict[int, int]:
        """Per partition of the topic, the events past the group's committed offset (past the log's start, where
        the group has committed nothing)."""
        known = await fresh_partitions(self._consumer, self._topic)  # partitions added since the last look too
        partitions = [TopicPartition(self._topic, n) for n in sorted(known or ())]
        ends = await self._high_water_marks(partitions)
        starts = await self._consumer.beginning_offsets(partitions)
        lag = {}
        for tp in partitions:
            committed = await self._consumer.committed(tp)
            lag[tp.partition] = max(0, ends[tp] - (starts[tp] if committed is None else committed))
        return lag

    async def _high_water_marks(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        """Each partition's high-water mark, as a fetch answers it. A fetch from near the end rather than
        `end_offsets()`: the local broker answers that with the start of the last batch written, not its end
        (measured: 60 events in batches read as 1 a partition), and the fetch costs one small read."""
        if set(partitions) != self._consumer.assignment():
            self._consumer.assign(partitions)  # manual assignment: the group is never joined
        await self._consumer.seek_to_end(*partitions)
        marks: dict[TopicPartition, int] = {}
        for _ in range(FETCH_TRIES):
            await self._consumer.getmany(*partitions, timeout_ms=FETCH_WAIT_MS, max_records=1000)
            marks = {tp: mark for tp in partitions if (mark := self._consumer.highwater(tp)) is not None}
            if len(marks) == len(partitions):
                return marks
        return {**await self._consumer.end_offsets(partitions), **marks}  # partitions no fetch answered yet

    async def run(self, stop: asyncio.Event, interval_s: float) -> None:
        """Export the lag every `interval_s` until `stop` is set; a broker that does not answer is logged, counted
        and shown on /status, and tried again."""
        while not stop.is_set():
            try:
                lag = await asyncio.wait_for(self.measure(), MEASURE_TIMEOUT_S)
            except (KafkaError, OSError, TimeoutError) as error:
                self.last_error = f"{type(error).__name__}: {error}"
                metrics.LAG_READ_FAILURES.inc()
                log.warning("could not read the lag of group %s (retrying): %s", self._group, self.last_error)
            else:
                self.last_error, self.last_lag = None, lag
                for partition, behind in lag.items():
                    metrics.GROUP_LAG.labels(self._group, self._topic, str(partition)).set(behind)
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval_s)
            except TimeoutError:
                continue
