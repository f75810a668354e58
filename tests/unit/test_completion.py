"""Deciding that a run succeeded: by the group's committed offsets against the fetcher's marks, never early."""

from __future__ import annotations

from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaConnectionError

from ragsync.events import Cursor, EmbedProgress, Event, FetchProgress, PartitionCounts, RunEnded, SyncRequest
from ragsync.kafka import Publisher
from ragsync.ledger import RunLedger
from ragsync.topics import Topics
from streams.completion import RunCompletion

TOPICS = Topics("requests", "items", "runs", "dead")
RUN = {"run_id": "r1", "tenant_id": "t", "service": "s"}


class Recorded(Publisher):
    """A publisher that keeps what it was given instead of sending it (no broker in a unit test)."""

    def __init__(self) -> None:
        super().__init__(AIOKafkaProducer())
        self.sent: list[tuple[str, str, Event]] = []

    async def send(self, topic: str, key: str, event: Event) -> None:
        self.sent.append((topic, key, event))

    async def flush(self) -> None:
        return None


def _fetched_run(ledger: RunLedger) -> None:
    request = SyncRequest(**RUN, sync_type="batch")
    started = datetime(2026, 11, 1, tzinfo=UTC)
    ledger.record(
        FetchProgress(**RUN, request=request, status="fetched", produced=5, marks={0: 4, 1: 7}, started_at=started)
    )
    counts = {0: PartitionCounts(next_offset=5, upserted=3), 1: PartitionCounts(next_offset=8, upserted=1, skipped=1)}
    ledger.record(EmbedProgress(**RUN, member="m", partitions=counts))


async def test_a_run_ends_only_once_every_marked_partition_is_committed_past_its_mark() -> None:
    committed: dict[int, int | None] = {0: 5, 1: 7}

    async def offsets(tp: TopicPartition) -> int | None:
        assert tp.topic == "items"
        return committed[tp.partition]

    ledger = RunLedger(AIOKafkaConsumer(), "runs")
    publisher = Recorded()
    completion = RunCompletion(ledger, publisher, TOPICS, offsets)
    _fetched_run(ledger)
    await completion.check()
    assert publisher.sent == [], "ended while partition 1 was committed only up to its mark"
    committed[1] = None
    await completion.check()
    assert publisher.sent == []
    committed[1] = 8
    await completion.check()
    [(_, end_key, ended), (_, cursor_key, cursor)] = publisher.sent
    assert isinstance(ended, RunEnded) and end_key == "run/t/s/r1/end"
    assert isinstance(cursor, Cursor) and cursor_key == "cursor/t/s"
    assert cursor.last_full is not None and cursor.last_full.run_id == "r1" == cursor.last_success.run_id
    run = ledger.book.get("r1")
    assert run is not None and run.status == "succeeded"
    await completion.check()
    assert len(publisher.sent) == 2, "a finished run is not ended again"


async def test_a_run_not_all_counted_is_not_asked_about_and_a_broker_error_is_reported() -> None:
    asked: list[TopicPartition] = []

    async def unreachable(tp: TopicPartition) -> int | None:
        asked.append(tp)
        raise KafkaConnectionError("broker away")

    ledger = RunLedger(AIOKafkaConsumer(), "runs")
    completion = RunCompletion(ledger, Recorded(), TOPICS, unreachable)
    _fetched_run(ledger)
    ledger.record(EmbedProgress(**RUN, member="m2", partitions={1: PartitionCounts(next_offset=7)}))
    ledger.record(EmbedProgress(**RUN, member="m", partitions={0: PartitionCounts(next_offset=5, upserted=3)}))
    await completion.check()
    assert asked == [] and completion.last_error is None
    ledger.record(EmbedProgress(**RUN, member="m2", partitions={1: PartitionCounts(next_offset=9, upserted=2)}))
    await completion.check()
    assert len(asked) == 1 and completion.last_error is not None and "broker away" in completion.last_error
