"""The embedding consumer group: item events in batches -> text -> vectors -> Qdrant, then commit.

Offsets are committed only after Qdrant acknowledged the batch (at-least-once); point ids are deterministic, so a
redelivered item overwrites its own point. Items that cannot be embedded are dead-lettered; the batch goes on.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError

from ragsync.events import (
    MAX_TENANTS_COUNTED,
    OTHER_TENANTS,
    DeadLetter,
    EmbedProgress,
    ItemEvent,
    PartitionCounts,
    TenantCounts,
)
from ragsync.items import ItemContent, ItemRules
from ragsync.messaging.delivery import Delivered, Position, Unreadable, decode
from ragsync.messaging.kafka import rewind_to_committed
from ragsync.model.chunks import Chunker
from ragsync.model.encoder import TextEncoder
from ragsync.operations import metrics
from ragsync.operations.supervision import unless_stopped
from ragsync.runstate.channel import RunChannel
from ragsync.store import Point, VectorStore, point_id
from ragsync.store.space import StoreSpace

log = logging.getLogger(__name__)
SPACE_CHECK_S = 1.0  # how often a member waiting for disk space looks again (and polls, to stay in the group)
# Chunks encoded, and points written, at a time within a batch: one slice is written while the next is encoded. The
# model computes mostly without the GIL and qdrant-edge converts points holding it, so the two overlap, fully with the
# model in a process of its own. A batch is also sorted in parts of this size, so the model starts on the first.
WRITE_SLICE = 256
# The last part is small: once the model has given its last vectors, the batch waits only for their write.
LAST_SLICE = 64
# A batch aims to take about this long: each has fixed costs (the model idles while its last write, progress record
# and commit finish and the next batch is decoded and sorted, 20-45 ms), which a batch of a second keeps to a few %.
BATCH_SECONDS = 1.0
# Batches are never smaller than this (unless EMBEDDER_MAX_BATCH is): a slow model's batch takes longer than
# BATCH_SECONDS, and smaller ones would only add fixed costs.
BATCH_FLOOR = 1024


T = TypeVar("T")
RunKey = tuple[str, str, str]  # run id, the run's tenant, service
Outcome = Literal["upserted", "skipped", "deleted", "dead_lettered"]
OUTCOMES: tuple[Outcome, ...] = ("upserted", "skipped", "deleted", "dead_lettered")
# (offset, outcome, the record's own tenant where it is not the run's) of each event of a run on one items partition
Settled = list[tuple[int, Outcome, str | None]]
PointMaker = Callable[["Chunk", list[float], float], Point]  # a chunk, its vector and the time it was written


def content_hash(model: str, text: str) -> str:
    """What decides whether an item must be embedded again: its text and the model."""
    return hashlib.sha256(f"{model}\n{text}".encode("utf-8", errors="surrogatepass")).hexdigest()[:32]


@dataclass
class BatchOutcome:
    """What one batch did with each of its item events, per run and items partition."""

    settled: dict[RunKey, dict[int, Settled]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(list)))
    tally: Counter[tuple[Outcome, str]] = field(default_factory=Counter)  # (outcome, service) -> events

    def count(self, at: Position, event: ItemEvent, outcome: Outcome) -> None:
        """Record what became of one event."""
        # One run's counts, whatever tenants its records name: keyed by the run's tenant, each record's own tenant
        # kept beside its outcome for the per-tenant counts.
        run = (event.run_id, event.run_tenant_id or event.tenant_id, event.service)
        own_tenant = event.tenant_id if event.run_tenant_id else None
        self.settled[run][at.partition].append((at.offset, outcome, own_tenant))
        self.tally[outcome, event.service] += 1

    def add_to_metrics(self) -> None:
        """Add the batch to `ragsync_items_total`: once per outcome and service, not per event."""
        for (outcome, service), events in self.tally.items():
            if outcome != "dead_lettered":  # counted by ragsync_dead_letters_total
                metrics.ITEMS.labels(metrics.stage_label(outcome), metrics.service_label(service)).inc(events)


def account(base: PartitionCounts, events: Settled) -> PartitionCounts:
    """`base` plus the events from its `next_offset` on; events before it were counted by an earlier batch (they
    are delivered again after a rebalance or a crash) and are not counted twice."""
    fresh = [event for event in events if event[0] >= base.next_offset]
    if not fresh:
        return base
    counts: dict[str, int] = {o: getattr(base, o) + sum(1 for _, f, _ in fresh if f == o) for o in OUTCOMES}
    tenants = _tenants_counted(base.tenants, fresh)
    return base.model_copy(
        update={**counts, "tenants": tenants, "next_offset": max(offset for offset, _, _ in fresh) + 1}
    )


def _tenants_counted(known: dict[str, TenantCounts], fresh: Settled) -> dict[str, TenantCounts]:
    """`known` plus the fresh events of records naming their own tenant: MAX_TENANTS_COUNTED tenants by name at
    most, any further one under OTHER_TENANTS."""
    tenants = dict(known)
    for _, outcome, tenant in fresh:
        if tenant is None:
            continue
        named = tenant in tenants or len(tenants) < MAX_TENANTS_COUNTED
        name = tenant if named else OTHER_TENANTS
        tenants[name] = tenants.get(name, TenantCounts()) + TenantCounts.model_validate({outcome: 1})
    return tenants


@dataclass(frozen=True)
class Rejected:
    """An event that cannot be embedded (or a record that is no event), and why."""

    at: Position
    reason: str
    original: str
    event: ItemEvent | None = None


@dataclass(frozen=True)
class Item:
    """An item event to store, with what it stores (text and payload) and the hash of what would be embedded."""

    at: Position
    event: ItemEvent
    content: ItemContent
    hash: str
    first_point: str  # the id of the item's first chunk's point, where its hash and chunk count are kept

    @property
    def text(self) -> str:
        return self.content.text


@dataclass(frozen=True)
class Chunk:
    """One chunk of a changed item to embed: the `index`th of the item's `count`, and its text."""

    item: Item
    index: int
    count: int
    text: str


def in_slices(things: list[T]) -> list[list[T]]:
    """`things` in slices of WRITE_SLICE, and a last one of LAST_SLICE at most."""
    tail = max(len(things) - LAST_SLICE, 0)
    starts = [*range(0, tail, WRITE_SLICE), tail]
    return [things[start:end] for start, end in zip(starts, [*starts[1:], len(things)], strict=True) if end > start]


@dataclass
class Spent:
    """Seconds a batch spent encoding (until its last slice's vectors came) and upserting (the sum over its
    slices); the two overlap."""

    encoding: float = 0.0
    upserting: float = 0.0


@dataclass
class Triage:
    """Events sorted: items to store, deletions, and events that cannot be processed."""

    items: list[Item] = field(default_factory=list)
    deletions: list[Delivered[ItemEvent]] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


@dataclass
class Sorting:
    """A batch as its parts are sorted: the stored state of its items, the changed ones (with their number of
    chunks), the unchanged ones, and the events that cannot be processed."""

    stored: dict[str, dict[str, Any]] = field(default_factory=dict)
    changed: list[tuple[Item, int]] = field(default_factory=list)
    unchanged: list[Item] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


def _first_point(event: ItemEvent) -> str:
    return point_id(event.tenant_id, event.service, event.item_id, 0)


def _latest(
    events: Sequence[Delivered[ItemEvent]],
) -> tuple[list[Delivered[ItemEvent]], list[Delivered[ItemEvent]]]:
    """Each item's latest event in the batch (only it is stored), and the events a later one superseded."""
    latest: dict[tuple[str, str, str], Delivered[ItemEvent]] = {}
    superseded = []
    for delivered in events:
        key = delivered.event.identity
        if key in latest:
            superseded.append(latest[key])
        latest[key] = delivered
    return list(latest.values()), superseded


class SliceWriter:
    """Encodes the chunks handed to it WRITE_SLICE at a time and upserts each slice as soon as its vectors arrive,
    in the order given, while the model encodes the next. The model gets every slice at once, so it works through
    them without waiting on the event loop in between."""

    def __init__(self, encoder: TextEncoder, store: VectorStore, point: PointMaker) -> None:
        self.spent = Spent()
        self._encoder, self._store, self._point = encoder, store, point
        self._slices: asyncio.Queue[tuple[list[Chunk], asyncio.Future[list[list[float]]]] | None] = asyncio.Queue()
        self._encodings: list[asyncio.Future[list[list[float]]]] = []
        self._writing: asyncio.Future[None] | None = None
        self._started: float | None = None
        self._touched_at = time.time()
        self._task = asyncio.ensure_future(self._write_in_order())

    def add(self, chunks: list[Chunk]) -> None:
        """Hand `chunks` to the model; they are written once encoded."""
        if chunks and self._started is None:
            self._started = time.perf_counter()
        for start in range(0, len(chunks), WRITE_SLICE):
            part = chunks[start : start + WRITE_SLICE]
            encoding = asyncio.ensure_future(self._encoder.encode_async([chunk.text for chunk in part]))
            self._encodings.append(encoding)
            self._slices.put_nowait((part, encoding))

    async def finish(self) -> Spent:
        """Return once every chunk handed over is durable (the first error, if any, comes out here)."""
        self._slices.put_nowait(None)
        await self._task
        return self.spent

    async def settle(self) -> None:
        """Wait until no encode or write of this writer runs any more, whatever failed: a batch that failed is
        retried whole, and its retry must never run beside them."""
        self._slices.put_nowait(None)  # after an error elsewhere, the slices handed over are still written
        await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.gather(*self._encodings, *(w for w in (self._writing,) if w), return_exceptions=True)

    async def _write_in_order(self) -> None:
        while (queued := await self._slices.get()) is not None:
            part, encoding = queued
            vectors = await encoding
            self.spent.encoding = time.perf_counter() - (self._started or 0.0)  # until the last vectors came
            points = [self._point(chunk, vector, self._touched_at) for chunk, vector in zip(part, vectors, strict=True)]
            if self._writing is not None:
                await self._writing
            self._writing = asyncio.ensure_future(self._upsert(points))
        if self._writing is not None:
            await self._writing

    async def _upsert(self, points: list[Point]) -> None:
        started = time.perf_counter()
        await asyncio.to_thread(self._store.upsert, points)
        self.spent.upserting += time.perf_counter() - started


class Embedder:
    """Embeds and stores batches of item events, and reports per run what became of them; independent of Kafka
    consumption, so testable on its own."""

    def __init__(
        self,
        encoder: TextEncoder,
        store: VectorStore,
        channel: RunChannel,
        rules: ItemRules | None = None,
    ) -> None:
        self._encoder = encoder
        self._store = store
        self._channel = channel
        self._rules = rules or ItemRules()
        self._chunker = Chunker(encoder)
        self.migrating = False

    async def prepare(self) -> None:
        """Write to the model's collection (created with its dimension) from now on. The model itself loads when
        a batch first has something to embed: an unchanged re-sync never waits for it."""
        dimension = await asyncio.to_thread(lambda: self._encoder.dimension)
        self.migrating = await asyncio.to_thread(self._store.ensure_collection, dimension, self._encoder.name)

    async def catch_up(self) -> None:
        """Read the run state to its end: a member that took over partitions continues their counts from what the
        previous owner reported (always before it committed)."""
        await self._channel.caught_up()

    async def process(
        self, events: Sequence[Delivered[ItemEvent]], member: str, unreadable: Sequence[Unreadable] = ()
    ) -> BatchOutcome:
        """Store one batch (and dead-letter its unreadable records); returns once Qdrant acknowledged it and
        `member`'s counts are published.

        The batch is looked up whole, then sorted and chunked a part at a time, each part's chunks handed to the
        model at once: the model starts on the first part while the others are sorted, rather than after all of
        them."""
        latest, superseded = _latest(events)
        outcome = BatchOutcome()
        sorting = Sorting(rejected=[Rejected(bad.at, bad.reason, bad.original) for bad in unreadable])
        # The whole batch is looked up in one call, before any write: every store call holds the store's lock, so
        # a lookup a part, made between the slices' writes, waited for the write before it.
        firsts = {d.event.identity: _first_point(d.event) for d in latest if d.event.op != "delete"}
        sorting.stored = await asyncio.to_thread(self._store.stored, list(firsts.values()))
        writer = SliceWriter(self._encoder, self._store, self._point)
        try:
            for part in in_slices(latest):
                await self._sort(part, firsts, sorting, writer, outcome)
            spent = await writer.finish()
        finally:
            await writer.settle()
        self._observe(sorting.changed, spent)
        await self._drop_surplus_chunks(sorting.changed, sorting.stored, outcome)
        await self._touch(sorting.unchanged, sorting.stored, outcome)
        for older in superseded:
            outcome.count(older.at, older.event, "skipped")
        for reject in sorting.rejected:
            await self._dead_letter(reject)
            if reject.event is not None:
                outcome.count(reject.at, reject.event, "dead_lettered")
        await self._report(outcome, member)
        outcome.add_to_metrics()
        return outcome

    async def _sort(
        self,
        part: list[Delivered[ItemEvent]],
        firsts: dict[tuple[str, str, str], str],
        sorting: Sorting,
        writer: SliceWriter,
        outcome: BatchOutcome,
    ) -> None:
        """Sort one part of a batch (its items' first points in `firsts`, looked up in `sorting.stored`): delete
        what was deleted, and hand the chunks of what changed to `writer`."""
        batch = self._triage(part, firsts)
        sorting.rejected += batch.rejected
        await self._delete(batch.deletions, outcome)
        stored = sorting.stored
        fresh: list[Item] = []
        for item in batch.items:
            same = stored.get(item.first_point, {}).get("content_hash") == item.hash
            (sorting.unchanged if same else fresh).append(item)
        sorting.changed += await self._chunk(fresh, writer)

    async def _delete(self, deletions: list[Delivered[ItemEvent]], outcome: BatchOutcome) -> None:
        """Mark the points of records flagged deleted: they go with their run's deletions, once its deletion
        budget allows or a person confirmed them (an upstream that flags everything deleted deletes nothing)."""
        at = time.time()
        for deletion in deletions:
            event = deletion.event
            await asyncio.to_thread(
                self._store.mark_deleted, event.tenant_id, event.service, event.item_id, event.run_id, at
            )
            outcome.count(deletion.at, event, "deleted")

    async def _chunk(self, items: list[Item], writer: SliceWriter) -> list[tuple[Item, int]]:
        """Cut the changed items into chunks and hand them to `writer`; each item and its number of chunks."""
        if items and not self._encoder.loaded:
            await self._encoder.load_async()  # the chunker needs the tokenizer; loading it must not block the loop
        # On a thread: the tokenizer runs in Rust without the GIL, beside the store's writes, which hold it.
        pieces = await asyncio.to_thread(self._chunker.split_all, [item.text for item in items])
        chunked = list(zip(items, pieces, strict=True))
        writer.add(
            [Chunk(item, index, len(texts), text) for item, texts in chunked for index, text in enumerate(texts)]
        )
        return [(item, len(texts)) for item, texts in chunked]

    @staticmethod
    def _observe(changed: list[tuple[Item, int]], spent: Spent) -> None:
        metrics.EMBED_BATCH.observe(sum(chunks for _, chunks in changed))
        if changed:
            metrics.EMBED_SECONDS.observe(spent.encoding)
            metrics.UPSERT_SECONDS.observe(spent.upserting)

    async def _drop_surplus_chunks(
        self, changed: list[tuple[Item, int]], stored: dict[str, dict[str, Any]], outcome: BatchOutcome
    ) -> None:
        """Delete the chunks a changed item no longer has (its text got shorter); count it upserted."""
        for item, chunks in changed:
            if int(stored.get(item.first_point, {}).get("chunks", 0)) > chunks:
                event = item.event
                await asyncio.to_thread(self._store.delete_item, event.tenant_id, event.service, event.item_id, chunks)
            outcome.count(item.at, item.event, "upserted")

    async def _touch(self, items: list[Item], stored: dict[str, dict[str, Any]], outcome: BatchOutcome) -> None:
        """Mark the points of unchanged items with their run: the sweep after a full run keeps what it touched."""
        by_run: dict[str, list[str]] = defaultdict(list)
        for item in items:
            event = item.event
            chunks = int(stored.get(item.first_point, {}).get("chunks", 1))
            by_run[event.run_id] += [point_id(event.tenant_id, event.service, event.item_id, c) for c in range(chunks)]
            outcome.count(item.at, event, "skipped")
        touched_at = time.time()
        for run_id, ids in by_run.items():
            await asyncio.to_thread(self._store.touch, ids, run_id, touched_at)

    def _triage(self, events: Sequence[Delivered[ItemEvent]], firsts: dict[tuple[str, str, str], str]) -> Triage:
        """Sort events of distinct items into items to store, deletions and events that cannot be embedded."""
        batch = Triage()
        for delivered in events:
            event = delivered.event
            if event.op == "delete":
                batch.deletions.append(delivered)
                continue
            content = self._rules.content(event.record, event.service)
            if content.text.strip():
                hashed = content_hash(self._encoder.name, content.text)
                batch.items.append(Item(delivered.at, event, content, hashed, firsts[event.identity]))
            else:
                reason = "the record has no text to embed (every field is empty or an id)"
                batch.rejected.append(Rejected(delivered.at, reason, event.to_bytes().decode(), event))
        return batch

    def _point(self, chunk: Chunk, vector: list[float], touched_at: float) -> Point:
        item, event = chunk.item, chunk.item.event
        payload = {
            "tenant_id": event.tenant_id,
            "service": event.service,
            "item_id": event.item_id,
            "chunk": chunk.index,
            "chunks": chunk.count,
            "text": chunk.text,
            "content_hash": item.hash,
            "run_id": event.run_id,
            "generation": event.run_id,
            "touched_at": touched_at,
            "model": self._encoder.name,
            "synced_at": event.emitted_at.isoformat(),
            "record": item.content.payload,
        }
        index = chunk.index
        point = item.first_point if index == 0 else point_id(event.tenant_id, event.service, event.item_id, index)
        return Point(id=point, vector=vector, payload=payload)

    async def _dead_letter(self, item: Rejected) -> None:
        event, at = item.event, item.at
        log.warning("dead-lettered %s[%d]@%d: %s", at.topic, at.partition, at.offset, item.reason)
        if event is None:
            metrics.UNREADABLE_EVENTS.labels(topic="items").inc()
        letter = DeadLetter(
            run_id=event.run_id if event else None,
            tenant_id=event.tenant_id if event else None,
            service=event.service if event else None,
            item_id=event.item_id if event else None,
            stage="embedder",
            reason=item.reason,
            source_topic=at.topic,
            source_partition=at.partition,
            source_offset=at.offset,
            original=item.original,
        )
        await self._channel.dead_letter(letter)

    async def _report(self, outcome: BatchOutcome, member: str) -> None:
        """Publish `member`'s new counts of each run and wait for the broker: before the batch is committed, so a
        member taking a partition over continues from them."""
        reports = []
        for (run_id, tenant, service), partitions in outcome.settled.items():
            run = self._channel.book.get(run_id)
            known = run.partition_counts() if run is not None else {}
            own = run.embeds.get(member) if run is not None else None
            counts = dict(own.partitions) if own is not None else {}
            for partition, events in partitions.items():
                counts[partition] = account(known.get(partition) or PartitionCounts(next_offset=0), events)
            if own is None or counts != own.partitions:
                report = EmbedProgress(
                    run_id=run_id, tenant_id=tenant, service=service, member=member, partitions=counts
                )
                reports.append(report)
        await self._channel.report(*reports)  # folded here at once: the next batch counts on


@dataclass
class BatchSize:
    """How many item events the next batch reads: what the last batches stored in BATCH_SECONDS, between
    BATCH_FLOOR and `cap` (EMBEDDER_MAX_BATCH). A fast encoder gets large batches, a slow one keeps frequent
    progress and commits."""

    cap: int
    rate: float | None = None  # items a second, smoothed over the last batches

    def next(self) -> int:
        """The most item events the next batch may hold."""
        floor = min(BATCH_FLOOR, self.cap)
        if self.rate is None:
            return floor
        return max(floor, min(self.cap, int(self.rate * BATCH_SECONDS)))

    def observe(self, items: int, seconds: float) -> None:
        """A batch of `items` took `seconds`, from its poll to its commit."""
        if items <= 0 or seconds <= 0:
            return
        rate = items / seconds
        self.rate = rate if self.rate is None else (self.rate + rate) / 2


@dataclass(frozen=True, kw_only=True)
class BatchOptions:
    """How a member batches: at most `max_batch` items a poll (the batch size adapts below it), waiting
    `poll_timeout_ms` for them; retries of a failing batch back off up to `retry_max_seconds`; and while a batch
    runs long, the member shows the group it lives every `keepalive_seconds`."""

    max_batch: int
    poll_timeout_ms: int
    retry_max_seconds: float = 15.0
    keepalive_seconds: float = 10.0


class EmbeddingConsumer:
    """One member of the embedding consumer group: poll a batch, process it, commit its offsets."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        embedder: Embedder,
        batches: BatchOptions,
        *,
        on_commit: Callable[[], None] = lambda: None,
        space: StoreSpace | None = None,
        in_group: bool = True,
    ) -> None:
        """`in_group=False`: `consumer` was assigned its partitions directly (a process that owns its broker)."""
        self._consumer = consumer
        self._space = space
        self._on_commit = on_commit
        self.member = uuid.uuid4().hex[:12]  # names this member's counts on the run-state topic
        self._assigned = True  # partitions arrived whose counts this member must continue from the run state
        if in_group:  # a member is told when the group gives it partitions; assigned ones stay as they are
            consumer.subscribe(topics=sorted(consumer.subscription()), listener=_Assignments(self))
        self._embedder = embedder
        self.batch_size = BatchSize(batches.max_batch)
        self._poll_timeout_ms = batches.poll_timeout_ms
        self._retry_max_seconds = batches.retry_max_seconds
        self._keepalive_seconds = batches.keepalive_seconds
        self.items_processed = 0
        self.ready = True
        self.busy = False  # its last poll brought items: work that yields to this member waits
        self.last_error: str | None = None

    def status(self) -> dict[str, Any]:
        """This member on /status: items processed, the next batch's size, readiness, last error, partitions."""
        return {
            "items_processed": self.items_processed,
            "batch_size": self.batch_size.next(),
            "ready": self.ready,
            "last_error": self.last_error,
            "partitions": sorted(tp.partition for tp in self._consumer.assignment()),
        }

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set. A restart after a crash first goes back to the committed offsets, so a
        batch fetched but not committed is delivered again."""
        await rewind_to_committed(self._consumer)
        while not stop.is_set():
            if not await self._room_for_a_batch(stop):
                return
            poll = self._consumer.getmany(timeout_ms=self._poll_timeout_ms, max_records=self.batch_size.next())
            batch = await unless_stopped(poll, stop) or {}
            messages = [m for partition in batch.values() for m in partition]
            self.busy = bool(messages)
            if not messages:
                continue
            started = time.monotonic()
            if not await self._process_until_done(messages, stop):
                return
            await self._commit(batch)
            self.batch_size.observe(len(messages), time.monotonic() - started)
            self._on_commit()
            self.items_processed += len(messages)

    async def _room_for_a_batch(self, stop: asyncio.Event) -> bool:
        """Wait while the store's disk is short of space, polling paused to stay in the group; False if stopped
        first. Nothing is taken meanwhile, so nothing is committed that the store could not hold."""
        if self._space is None or (shortage := self._space.shortage()) is None:
            return True
        metrics.STORE_SPACE_PAUSES.inc()
        log.error("%s", shortage)
        while shortage is not None:
            try:
                await asyncio.wait_for(stop.wait(), timeout=SPACE_CHECK_S)
                return False
            except TimeoutError:
                await self._poll_paused()
            shortage = self._space.shortage()
        log.warning("the store's disk has room again; taking batches")
        self._consumer.resume(*self._consumer.assignment())
        return True

    def took_over(self) -> None:
        """The group gave this member partitions: catch up on the run state before the next batch."""
        self._assigned = True

    async def _process_until_done(self, messages: list[ConsumerRecord[Any, Any]], stop: asyncio.Event) -> bool:
        """Process the batch, retrying for as long as it takes; False if stopped first (nothing committed)."""
        events, unreadable = decode(ItemEvent, messages)  # the edge: the embedder takes typed events
        delay = 0.5
        while True:
            if self._assigned:
                self._assigned = False
                await self._embedder.catch_up()
            try:
                work = self._embedder.process(events, self.member, unreadable)
                await self._staying_in_group(work, len(messages))
            except Exception as error:  # noqa: BLE001 - Qdrant or the broker away: keep the batch, retry
                self._not_ready(error, len(messages))
            else:
                self._consumer.resume(*self._consumer.assignment())
                self._back_to_ready()
                return True
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
                return False
            except TimeoutError:
                await self._poll_paused()
            delay = min(delay * 2, self._retry_max_seconds)

    async def _staying_in_group(self, work: Coroutine[Any, Any, BatchOutcome], size: int) -> BatchOutcome:
        """Await `work`, polling meanwhile whenever it takes longer than the keep-alive interval.

        A member that does not poll within the broker's max poll interval is dropped from its group, and its
        batch's commit fails. A batch can wait that long on the store: the embedded store's index build holds
        every call for a minute at 100,000 points, more on larger stores.
        """
        task = asyncio.ensure_future(work)
        try:
            while not (await asyncio.wait({task}, timeout=self._keepalive_seconds))[0]:
                log.info("batch of %d items still in progress; polling to stay in the group", size)
                await self._poll_paused()
        finally:
            task.cancel()  # a no-op once done; stops waiting on the work if this member is cancelled meanwhile
        return task.result()

    async def _poll_paused(self) -> None:
        """Poll with every partition paused: it delivers nothing, but tells the group this member is alive.

        A rebalance can assign new, unpaused partitions between the pause and the poll; whatever the poll
        returns from them is sought back, so it is delivered again rather than skipped.
        """
        self._consumer.pause(*self._consumer.assignment())
        for tp, records in (await self._consumer.getmany(timeout_ms=0)).items():
            if records:
                self._consumer.seek(tp, records[0].offset)

    def _not_ready(self, error: BaseException, size: int) -> None:
        metrics.STORE_ERRORS.inc()
        self.ready, self.last_error = False, f"{type(error).__name__}: {error}"
        log.error("batch of %d items failed, nothing committed, retrying: %s", size, self.last_error)

    def _back_to_ready(self) -> None:
        if not self.ready:
            log.warning("batch went through after an outage; resuming")
        self.ready, self.last_error = True, None

    async def _commit(self, batch: dict[TopicPartition, list[ConsumerRecord[Any, Any]]]) -> None:
        offsets = {tp: records[-1].offset + 1 for tp, records in batch.items() if records}
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as error:
            # The partitions moved to another member during the batch; it will redeliver, and the
            # deterministic point ids make the second write an overwrite.
            metrics.COMMIT_FAILURES.inc()
            log.warning("commit after a rebalance failed (items will be redelivered, not lost): %s", error)


class _Assignments(ConsumerRebalanceListener):  # type: ignore[misc]
    """Tells a member when the group gave it partitions (another member may have counted their runs so far)."""

    def __init__(self, member: EmbeddingConsumer) -> None:
        self._member = member

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        """Nothing to hand over: counts are published before every commit."""

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        """Catch up on the run state before the next batch is counted."""
        self._member.took_over()
