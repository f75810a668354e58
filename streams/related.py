"""Related-content edges, computed by their own stage from what the embedder group stored.

The stage reads the items topic in its own consumer group, never past the embedder group's committed offsets: an
event the embedder committed is in the store. For each stored item whose edges are missing or were computed for
other content, it asks the store for the tenant's nearest points and keeps the best other items as the item's
edges. Similarity is symmetric, so each edge is also offered to the other item's list, and the items that already
point at a changed item get their score for it again. A deleted item's incoming edges are removed; while its points
are still there (its deletion waits for its run, or for a person: a held run), the lists it left are computed again
when their items are next synced, so a deletion nobody confirms loses nothing. Edges to items gone since are dropped
whenever a list is merged again, and never shown: reading checks every edge against the store.

Nothing here can fail a run: the runs end by the embedder group's offsets alone. A failing batch is logged,
counted and retried; what waits shows as `ragsync_related_lag`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from ragsync.events import ItemEvent
from ragsync.messaging.delivery import Delivered, decode
from ragsync.messaging.kafka import Committed, rewind_to_committed
from ragsync.operations import metrics
from ragsync.operations.supervision import unless_stopped
from ragsync.store import VectorStore, point_id
from ragsync.store.base import Record
from ragsync.store.related_edges import (
    NEIGHBOUR_FIELDS,
    RELATED,
    RELATED_HASH,
    RELATED_IDS,
    Edge,
    RelatedRules,
    best_edges,
    edges_payload,
    stored_edges,
    with_edge,
)

log = logging.getLogger(__name__)
STALE = ""  # as a list's content hash: no item's, so the list is computed again when its item is next synced
CHECK_EVERY_S = 1.0  # how often the embedder group's committed offsets are read when nothing woke the stage
YIELD_CHECK_S = 0.1  # how often a stage yielding to busy embedders looks again


@dataclass
class EdgeTally:
    """What one batch did: items by outcome, and edges written."""

    items: Counter[str] = field(default_factory=Counter)
    edges: int = 0

    def add_to_metrics(self) -> None:
        """Add the batch to the related-content metrics, once per outcome."""
        for outcome, count in self.items.items():
            metrics.RELATED_ITEMS.labels(outcome).inc(count)
        metrics.RELATED_EDGES.inc(self.edges)


class EdgeWrites(dict[str, dict[str, Any]]):
    """The payloads a batch writes, by point: each list as it will stand once the batch is written."""

    def edges(self, point: str, stored: dict[str, Any]) -> list[Edge]:
        """The point's edges: as this batch left them, else as stored."""
        return stored_edges(self.get(point, stored))

    def keep(self, point: str, edges: list[Edge], content_hash: str | None = None) -> None:
        """Write `edges` as the point's list (and the content hash they were computed for, when given)."""
        self[point] = self.get(point, {}) | edges_payload(edges, content_hash)


class RelatedEdges:
    """Computes and keeps the edges of a batch of stored items; independent of Kafka, so testable on its own."""

    def __init__(self, store: VectorStore, rules: RelatedRules) -> None:
        self._store = store
        self._rules = rules

    async def process(self, events: Sequence[Delivered[ItemEvent]]) -> EdgeTally:
        """Bring the edges of the batch's items (the latest event of each) in step with the store."""
        latest = {delivered.event.identity: delivered.event for delivered in events}
        return await asyncio.to_thread(self._process, list(latest.values()))

    def _process(self, events: list[ItemEvent]) -> EdgeTally:
        tally = EdgeTally()
        payloads = EdgeWrites()
        written = [e for e in events if e.op != "delete"]
        for event in events:
            if event.op == "delete":
                self._forget(event, payloads, tally)
        firsts = {point_id(e.tenant_id, e.service, e.item_id, 0): e for e in written}
        stored = self._store.points(list(firsts), ["content_hash", RELATED_HASH])
        stale = [first for first, r in stored.items() if r.payload.get(RELATED_HASH) != r.payload.get("content_hash")]
        if unchanged := len(stored) - len(stale):
            tally.items["unchanged"] += unchanged
        # Vectors only for the items computed: an unchanged full re-sync of millions reads none.
        offered: dict[str, list[Edge]] = {}
        for first, record in self._store.points(stale, ["content_hash"], vectors=True).items():
            edges = self._compute(firsts[first], record, offered, payloads)
            payloads.keep(first, edges, record.payload.get("content_hash"))
            tally.items["computed"] += 1
            tally.edges += len(edges)
        tally.edges += self._offer(offered, payloads)
        self._store.set_payloads(payloads)
        return tally

    def _compute(
        self, event: ItemEvent, record: Record, offered: dict[str, list[Edge]], payloads: EdgeWrites
    ) -> list[Edge]:
        """The item's own edges; each is also offered back to the other item, and the items that point at this one
        get their score for its new content."""
        assert record.vector is not None
        tenant, service, item = event.tenant_id, event.service, event.item_id
        hits = self._store.nearest(record.vector, self._rules.query_limit, tenant, NEIGHBOUR_FIELDS)
        edges = best_edges(tenant, service, item, hits, self._rules)
        for edge in edges:
            offered.setdefault(edge.point, []).append(Edge(tenant, service, item, edge.score))
        self._rescore(record, Edge(tenant, service, item, 0.0), payloads)
        return edges

    def _rescore(self, record: Record, itself: Edge, payloads: EdgeWrites) -> None:
        """Score the item again in the lists that point at it (its content changed; theirs did not)."""
        ids = [other.id for other in self._store.pointing_at(itself.tenant_id, RELATED_IDS, record.id, [])]
        for other in self._store.points([i for i in ids if i != record.id], [RELATED], vectors=True).values():
            if other.vector is None:
                continue
            score = float(np.dot(np.asarray(record.vector), np.asarray(other.vector)))  # unit vectors: cosine
            rescored = Edge(itself.tenant_id, itself.service, itself.item_id, score)
            payloads.keep(other.id, with_edge(payloads.edges(other.id, other.payload), rescored, self._rules))

    def _offer(self, offered: dict[str, list[Edge]], payloads: EdgeWrites) -> int:
        """Merge the offered edges into the other items' lists, less their edges to items gone since; returns how
        many lists changed."""
        waiting = [point for point in offered if point not in payloads]
        current = {point: record.payload for point, record in self._store.points(waiting, [RELATED]).items()}
        lists = {point: payloads.edges(point, current.get(point, {})) for point in offered}
        targets = {edge.point for edges in lists.values() for edge in edges}
        there = self._store.points(list(targets), [])
        taken = 0
        for point, edges in offered.items():
            if point not in payloads and point not in current:
                continue  # gone since the query found it
            before = lists[point]
            after = [edge for edge in before if edge.point in there]
            for edge in edges:
                after = with_edge(after, edge, self._rules)
            if after != before:
                payloads.keep(point, after)
                taken += 1
        return taken

    def _forget(self, event: ItemEvent, payloads: EdgeWrites, tally: EdgeTally) -> None:
        """Remove the edges that point at a deleted item. While its points are still there (only marked: its run's
        deletions may be held, and never confirmed), the lists it left are also computed again the next time their
        items are synced, so a deletion that never happens costs no edge for good."""
        gone = point_id(event.tenant_id, event.service, event.item_id, 0)
        waiting = bool(self._store.points([gone], []))
        for other in self._store.pointing_at(event.tenant_id, RELATED_IDS, gone, [RELATED]):
            kept = [edge for edge in payloads.edges(other.id, other.payload) if edge.point != gone]
            payloads.keep(other.id, kept, STALE if waiting else None)
        tally.items["deletion_waiting" if waiting else "deleted"] += 1


@dataclass(frozen=True, kw_only=True)
class RelatedBatches:
    """How the related-content stage batches: at most `max_batch` items a poll; retries of a failing batch back
    off up to `retry_max_seconds`."""

    max_batch: int
    retry_max_seconds: float = 15.0


class RelatedConsumer:
    """The stage's member of its consumer group: items the embedder group committed, in batches, then commit."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        edges: RelatedEdges,
        stored_up_to: Committed,
        batches: RelatedBatches,
        *,
        embedders_busy: Callable[[], bool] = lambda: False,
    ) -> None:
        """`stored_up_to`: the embedder group's committed offset of an items partition. `embedders_busy`: whether
        the embedders of this process have items to embed; the stage waits meanwhile (it shares their process:
        the store, its lock and the interpreter), so edges never slow the main path, and catch up once it idles."""
        self.consumer = consumer
        self._embedders_busy = embedders_busy
        self._edges = edges
        self._stored_up_to = stored_up_to
        self._max_batch = batches.max_batch
        self._retry_max_seconds = batches.retry_max_seconds
        self._wake = asyncio.Event()
        self._checks = 0
        self.waiting = 0
        self.items_processed = 0
        self.last_error: str | None = None

    def status(self) -> dict[str, Any]:
        """The stage on /status: items whose edges wait, items processed, last error."""
        return {"waiting": self.waiting, "items_processed": self.items_processed, "last_error": self.last_error}

    def wake(self) -> None:
        """Look now (the embedder in this process committed a batch)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Compute edges until `stop` is set. A restart first goes back to the committed offsets."""
        await rewind_to_committed(self.consumer)
        while not stop.is_set():
            if self._embedders_busy():
                self.consumer.pause(*self.consumer.assignment())  # nor fetched meanwhile
                await unless_stopped(asyncio.sleep(YIELD_CHECK_S), stop)
                continue
            try:
                stored = await self._stored_limits()
            except KafkaError as error:  # the broker away: what the embedders stored cannot be known yet
                self._failed(error, "reading the embedder group's committed offsets")
                await unless_stopped(asyncio.sleep(CHECK_EVERY_S), stop)
                continue
            if not self.waiting:
                await unless_stopped(self._wake.wait(), stop, CHECK_EVERY_S)
                self._wake.clear()
                continue
            batch = await self.consumer.getmany(timeout_ms=100, max_records=self._max_batch)
            events = self._within(batch, stored)
            if events and not await self._process_until_done(events, stop):
                return
            await self._commit(batch, stored)

    async def caught_up(self, stop: asyncio.Event) -> None:
        """Return once a look begun after this call found no stored item waiting for its edges, or the stage is
        failing (its `last_error` says why)."""
        asked = self._checks
        self.wake()
        while not stop.is_set() and not (self._checks >= asked + 2 and self.waiting == 0) and not self.last_error:
            await asyncio.sleep(0.05)

    async def _stored_limits(self) -> dict[TopicPartition, int]:
        """The embedder group's committed offset of each assigned partition: the events before it are stored.
        Partitions read up to it are paused, so a fetch brings only stored items."""
        stored: dict[TopicPartition, int] = {}
        waiting = 0
        for tp in sorted(self.consumer.assignment()):
            stored[tp] = await self._stored_up_to(tp) or 0
            ahead = max(0, stored[tp] - await self.consumer.position(tp))
            metrics.RELATED_LAG.labels(str(tp.partition)).set(ahead)
            (self.consumer.resume if ahead else self.consumer.pause)(tp)
            waiting += ahead
        self.waiting = waiting
        self._checks += 1
        return stored

    def _within(
        self, batch: dict[TopicPartition, list[ConsumerRecord[Any, Any]]], stored: dict[TopicPartition, int]
    ) -> list[Delivered[ItemEvent]]:
        """The batch's events the embedder group had committed (`batch` keeps only those); the others are sought
        back and fetched again."""
        kept: list[ConsumerRecord[Any, Any]] = []
        for tp, records in batch.items():
            allowed = [record for record in records if record.offset < stored.get(tp, 0)]
            if len(allowed) < len(records):
                self.consumer.seek(tp, records[len(allowed)].offset)
            batch[tp] = allowed
            kept += allowed
        events, _unreadable = decode(ItemEvent, kept)  # the embedder dead-letters what it cannot read
        return events

    async def _process_until_done(self, events: list[Delivered[ItemEvent]], stop: asyncio.Event) -> bool:
        """Process the batch, retrying for as long as it takes; False if stopped first (nothing committed)."""
        delay = 0.5
        while True:
            try:
                tally = await self._edges.process(events)
            except Exception as error:  # noqa: BLE001 - the store away or refusing: keep the batch, retry
                self._failed(error, f"computing the edges of {len(events)} items")
            else:
                if self.last_error:
                    log.warning("related-content edges go through again; resuming")
                self.last_error = None
                tally.add_to_metrics()
                return True
            await unless_stopped(asyncio.sleep(delay), stop)
            if stop.is_set():
                return False
            delay = min(delay * 2, self._retry_max_seconds)

    def _failed(self, error: BaseException, doing: str) -> None:
        metrics.RELATED_FAILURES.inc()
        self.last_error = f"{type(error).__name__}: {error}"
        log.error("related-content edges: %s failed, retrying: %s", doing, self.last_error)

    async def _commit(
        self, batch: dict[TopicPartition, list[ConsumerRecord[Any, Any]]], stored: dict[TopicPartition, int]
    ) -> None:
        offsets = {tp: records[-1].offset + 1 for tp, records in batch.items() if records}
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as error:
            # The partitions moved to another member meanwhile: it computes these items again, which changes
            # nothing (their edges are found in step and left alone).
            log.warning("commit of related-content edges after a rebalance failed (redone, not lost): %s", error)
            return
        self.items_processed += sum(len(records) for records in batch.values())
        for tp, offset in offsets.items():
            metrics.RELATED_LAG.labels(str(tp.partition)).set(max(0, stored[tp] - offset))
