"""The embedding consumer group: item events in batches -> text -> vectors -> Qdrant, then commit.

Offsets are committed only after Qdrant acknowledged the batch (at-least-once); point ids are deterministic, so a
redelivered item overwrites its own point. Items that cannot be embedded are dead-lettered; the batch goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from pydantic import ValidationError

from ragsync import metrics
from ragsync.events import DeadLetter, ItemEvent, RunProgress, describe_validation_error
from ragsync.kafka import Publisher
from ragsync.store import Point, VectorStore, point_id
from ragsync.topics import Topics
from streams.items import item_text
from streams.model import TextEncoder

log = logging.getLogger(__name__)


RunKey = tuple[str, str, str]  # run id, tenant, service


@dataclass
class BatchOutcome:
    """What one batch did, per run: the ids now in Qdrant and the ids dead-lettered."""

    upserted: dict[RunKey, list[str]] = field(default_factory=lambda: defaultdict(list))
    dead: dict[RunKey, list[str]] = field(default_factory=lambda: defaultdict(list))
    unreadable: int = 0


@dataclass(frozen=True)
class Rejected:
    """An event that cannot be embedded, and why."""

    message: ConsumerRecord[Any, Any]
    reason: str
    event: ItemEvent | None = None


class Embedder:
    """Embeds and stores batches of item events; independent of Kafka consumption, so testable on its own."""

    def __init__(self, encoder: TextEncoder, store: VectorStore, publisher: Publisher, topics: Topics) -> None:
        self._encoder = encoder
        self._store = store
        self._publisher = publisher
        self._topics = topics

    async def prepare(self) -> None:
        """Load the model and create the collection with the model's dimension."""
        dimension = await asyncio.to_thread(lambda: self._encoder.dimension)
        await asyncio.to_thread(self._store.ensure_collection, dimension)

    async def process(self, messages: Sequence[ConsumerRecord[Any, Any]]) -> BatchOutcome:
        """Embed and upsert one batch; returns once Qdrant acknowledged it and progress is published."""
        items, rejected = self._triage(messages)
        metrics.EMBED_BATCH.observe(len(items))
        with metrics.EMBED_SECONDS.time():
            vectors = await asyncio.to_thread(self._encoder.encode, [text for _, text in items])
        points = [self._point(e, t, v) for (e, t), v in zip(items, vectors, strict=True)]
        with metrics.UPSERT_SECONDS.time():
            await asyncio.to_thread(self._store.upsert, points)
        outcome = BatchOutcome()
        for event, _ in items:
            outcome.upserted[(event.run_id, event.tenant_id, event.service)].append(event.item_id)
            metrics.ITEMS.labels("upserted", event.service).inc()
        for item in rejected:
            await self._dead_letter(item)
            if item.event is None:
                outcome.unreadable += 1
            else:
                outcome.dead[(item.event.run_id, item.event.tenant_id, item.event.service)].append(item.event.item_id)
        await self._report(outcome)
        await self._publisher.flush()
        return outcome

    @staticmethod
    def _triage(messages: Sequence[ConsumerRecord[Any, Any]]) -> tuple[list[tuple[ItemEvent, str]], list[Rejected]]:
        """Split a batch into (event, text) pairs to embed and events that cannot be embedded."""
        items: list[tuple[ItemEvent, str]] = []
        rejected: list[Rejected] = []
        for message in messages:
            try:
                event = ItemEvent.model_validate_json(message.value or b"")
            except ValidationError as error:
                rejected.append(Rejected(message, describe_validation_error(error)))
                continue
            text = item_text(event.record, event.service)
            if text.strip():
                items.append((event, text))
            else:
                rejected.append(
                    Rejected(message, "the record has no text to embed (every field is empty or an id)", event)
                )
        return items, rejected

    def _point(self, event: ItemEvent, text: str, vector: list[float]) -> Point:
        payload = {
            "tenant_id": event.tenant_id,
            "service": event.service,
            "item_id": event.item_id,
            "chunk": 0,
            "text": text,
            "run_id": event.run_id,
            "model": self._encoder.name,
            "synced_at": event.emitted_at.isoformat(),
            "record": event.record,
        }
        return Point(id=point_id(event.tenant_id, event.service, event.item_id), vector=vector, payload=payload)

    async def _dead_letter(self, item: Rejected) -> None:
        event, message = item.event, item.message
        log.warning("dead-lettered %s[%d]@%d: %s", message.topic, message.partition, message.offset, item.reason)
        metrics.DEAD_LETTERS.labels("embedder").inc()
        if event is None:
            metrics.UNREADABLE_EVENTS.labels(topic="items").inc()
        letter = DeadLetter(
            run_id=event.run_id if event else None,
            tenant_id=event.tenant_id if event else None,
            service=event.service if event else None,
            item_id=event.item_id if event else None,
            stage="embedder",
            reason=item.reason,
            source_topic=message.topic,
            source_partition=message.partition,
            source_offset=message.offset,
            original=bytes(message.value or b"").decode("utf-8", errors="replace"),
        )
        await self._publisher.send(self._topics.dead_letters, event.run_id if event else "rejected", letter)

    async def _report(self, outcome: BatchOutcome) -> None:
        for run_id, tenant, service in set(outcome.upserted) | set(outcome.dead):
            progress = RunProgress(
                run_id=run_id,
                tenant_id=tenant,
                service=service,
                source="embedder",
                item_ids=outcome.upserted.get((run_id, tenant, service), []),
                dead_item_ids=outcome.dead.get((run_id, tenant, service), []),
            )
            await self._publisher.send(self._topics.sync_runs, run_id, progress)


class EmbeddingConsumer:
    """One member of the embedding consumer group: poll a batch, process it, commit its offsets."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        embedder: Embedder,
        max_batch: int,
        poll_timeout_ms: int,
        retry_max_seconds: float = 15.0,
    ) -> None:
        self._consumer = consumer
        self._embedder = embedder
        self._max_batch = max_batch
        self._poll_timeout_ms = poll_timeout_ms
        self._retry_max_seconds = retry_max_seconds
        self.items_processed = 0
        self.ready = True
        self.last_error: str | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set."""
        while not stop.is_set():
            batch = await self._consumer.getmany(timeout_ms=self._poll_timeout_ms, max_records=self._max_batch)
            messages = [m for partition in batch.values() for m in partition]
            if not messages:
                continue
            if not await self._process_until_done(messages, stop):
                return
            await self._commit(batch)
            self.items_processed += len(messages)

    async def _process_until_done(self, messages: list[ConsumerRecord[Any, Any]], stop: asyncio.Event) -> bool:
        """Process the batch, retrying for as long as it takes; False if stopped first (nothing committed)."""
        delay = 0.5
        while True:
            try:
                await self._embedder.process(messages)
            except Exception as error:  # noqa: BLE001 - Qdrant or the broker away: keep the batch, retry
                self._not_ready(error, len(messages))
            else:
                self._back_to_ready()
                return True
            # Paused partitions deliver nothing, but polling keeps this member in the group meanwhile.
            self._consumer.pause(*self._consumer.assignment())
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
                return False
            except TimeoutError:
                await self._consumer.getmany(timeout_ms=0)
            delay = min(delay * 2, self._retry_max_seconds)

    def _not_ready(self, error: BaseException, size: int) -> None:
        metrics.STORE_ERRORS.inc()
        self.ready, self.last_error = False, f"{type(error).__name__}: {error}"
        log.error("batch of %d items failed, nothing committed, retrying: %s", size, self.last_error)

    def _back_to_ready(self) -> None:
        if not self.ready:
            log.warning("batch went through after an outage; resuming")
            self._consumer.resume(*self._consumer.assignment())
        self.ready, self.last_error = True, None

    async def _commit(self, batch: dict[TopicPartition, list[ConsumerRecord[Any, Any]]]) -> None:
        offsets = {tp: records[-1].offset + 1 for tp, records in batch.items() if records}
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as error:
            # The partitions moved to another member during the batch; it will redeliver, and the
            # deterministic point ids make the second write an overwrite.
            log.warning("commit after a rebalance failed (items will be redelivered, not lost): %s", error)
