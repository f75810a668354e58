"""Deciding that a run succeeded: by the group's committed offsets against the fetcher's marks, never early."""

from __future__ import annotations

from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaConnectionError

from ragsync.events import Cursor, EmbedProgress, Event, FetchProgress, PartitionCounts, RunEnded, SyncRequest
from ragsync.messaging.kafka import Publisher
from ragsync.messaging.topics import Topics
from ragsync.runstate.channel import RunChannel
from ragsync.runstate.ledger import RunLedger
from ragsync.runstate.runs import RunState
from ragsync.streams.completion import RunCompletion, tolerance_error
from tests.unit.doubles import nothing_stored

TOPICS = Topics(sync_requests="requests", items="items", sync_runs="runs", dead_letters="dead")
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
    completion = RunCompletion(RunChannel(ledger=ledger, publisher=publisher, topics=TOPICS), offsets, nothing_stored())
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
    completion = RunCompletion(
        RunChannel(ledger=ledger, publisher=Recorded(), topics=TOPICS), unreachable, nothing_stored()
    )
    _fetched_run(ledger)
    ledger.record(EmbedProgress(**RUN, member="m2", partitions={1: PartitionCounts(next_offset=7)}))
    ledger.record(EmbedProgress(**RUN, member="m", partitions={0: PartitionCounts(next_offset=5, upserted=3)}))
    await completion.check()
    assert asked == [] and completion.last_error is None
    ledger.record(EmbedProgress(**RUN, member="m2", partitions={1: PartitionCounts(next_offset=9, upserted=2)}))
    await completion.check()
    assert len(asked) == 1 and completion.last_error is not None and "broker away" in completion.last_error


def _processed_run(records: int, no_id: int, no_text: int = 0, unchanged: int = 0) -> RunState:
    """A fetched run of `records` records whose every event settled: `no_id` dead-lettered by the fetcher,
    `no_text` by the embedder, `unchanged` found unchanged, the rest stored."""
    request = SyncRequest(**RUN)
    produced = records - no_id
    fetch = FetchProgress(
        **RUN,
        request=request,
        status="fetched",
        produced=produced,
        dead_lettered=no_id,
        dead_reasons={"no id field": no_id} if no_id else {},
        dead_examples={"no id field": "s record has no id field (...); add SCHEMAS_DIR/s.toml"} if no_id else {},
    )
    counts = PartitionCounts(
        next_offset=produced, upserted=produced - no_text - unchanged, skipped=unchanged, dead_lettered=no_text
    )
    run = RunState("r1", "t", "s")
    run.apply(fetch)
    run.apply(EmbedProgress(**RUN, member="m", partitions={0: counts}))
    return run


def test_a_few_bad_records_still_succeed_and_too_many_fail_naming_the_reason_and_the_fix() -> None:
    assert tolerance_error(_processed_run(200, no_id=20), 0.5) is None
    error = tolerance_error(_processed_run(200, no_id=120), 0.5)
    assert error is not None
    assert error.startswith("120 of 200 records were dead-lettered (60%, over RUN_MAX_DEAD_LETTER_SHARE=0.5)")
    assert "most common reason: no id field (120); for example: s record has no id field (...); add" in error
    assert "ragsync dead-letters list --run-id r1" in error


def test_a_run_that_stored_nothing_fails_and_one_that_found_everything_unchanged_does_not() -> None:
    error = tolerance_error(_processed_run(250, no_id=240, no_text=10), 0.99)
    assert error is not None and error.startswith("none of its 250 records was stored")
    assert "most common reason: no id field (240)" in error
    only_text = tolerance_error(_processed_run(10, no_id=0, no_text=10), 0.99)
    assert only_text is not None and "no text to embed (10)" in only_text and "text_fields" in only_text
    assert tolerance_error(_processed_run(50, no_id=1, unchanged=49), 0.5) is None
    assert tolerance_error(_processed_run(0, no_id=0), 0.0) is None  # nothing came in: nothing to judge


def test_the_share_setting_from_any_dead_letter_to_never() -> None:
    assert tolerance_error(_processed_run(200, no_id=1), 0.0) is not None
    assert tolerance_error(_processed_run(250, no_id=250), 1.0) is None


async def test_a_run_over_the_share_ends_failed_without_moving_the_cursor() -> None:
    async def offsets(tp: TopicPartition) -> int | None:
        return 1_000

    ledger = RunLedger(AIOKafkaConsumer(), "runs")
    publisher = Recorded()
    completion = RunCompletion(
        RunChannel(ledger=ledger, publisher=publisher, topics=TOPICS),
        offsets,
        nothing_stored(),
        max_dead_letter_share=0.5,
    )
    processed = _processed_run(200, no_id=150)
    assert processed.fetch is not None
    ledger.record(processed.fetch.model_copy(update={"marks": {0: 49}}))
    for record in processed.embeds.values():
        ledger.record(record)
    await completion.check()
    [(_, key, ended)] = publisher.sent
    assert isinstance(ended, RunEnded) and ended.status == "failed" and key == "run/t/s/r1/end"
    run = ledger.book.get("r1")
    assert run is not None and run.status == "failed" and run.error == ended.error
    assert ledger.book.last_success("t", "s") is None
