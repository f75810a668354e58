"""Test doubles for stage unit tests: a real (if tiny) encoder, a publisher that keeps what it is given instead
of sending it, and a run ledger fed only by what the stage publishes. No broker, no model download, no server."""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
from pathlib import Path
from typing import Any, Literal, Self

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import RecordMetadata

from ragsync.events import Event, FetchProgress, ItemEvent, TenantRequest
from ragsync.messaging.delivery import Delivered, Position
from ragsync.messaging.kafka import Publisher
from ragsync.messaging.topics import Topics
from ragsync.model.encoder import ModelOptions, TextEncoder
from ragsync.runstate.channel import RunChannel
from ragsync.runstate.deletions import DeletionBudget, DeletionGuard
from ragsync.runstate.ledger import RunLedger
from ragsync.store.client_store import ClientStore
from ragsync.streams.embedder import Embedder

WORD = re.compile(r"\S+")
TOPICS = Topics(
    sync_requests="t.sync-requests", items="t.items", sync_runs="t.sync-runs", dead_letters="t.dead-letters"
)  # a stage test's topic names


class HashingEncoder(TextEncoder):
    """Hashes each word into one of 16 dimensions: texts sharing words point the same way. It counts its
    encodes, so a test sees what was embedded again."""

    def __init__(self, folder: Path) -> None:
        super().__init__(ModelOptions(name=str(folder)))  # a local folder name: nothing is loaded
        self.encoded: list[str] = []

    def load(self) -> None:
        pass  # nothing to load

    async def load_async(self) -> None:
        pass

    @property
    def dimension(self) -> int:
        return 16

    @property
    def max_tokens(self) -> int:
        return 64

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        return [match.span() for match in WORD.finditer(text)]

    async def encode_async(self, texts: list[str]) -> list[list[float]]:
        return self.encode(texts)

    def encode(self, texts: list[str]) -> list[list[float]]:
        self.encoded += texts
        return [_unit(text) for text in texts]


def _unit(text: str) -> list[float]:
    vector = [0.0] * 16
    for word in WORD.findall(text.lower()):
        vector[hashlib.sha256(word.encode()).digest()[0] % 16] += 1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


class KeptPublisher(Publisher):
    """Keeps every event it is given, by topic, instead of sending it."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str | None, Any]] = []

    async def send(self, topic: str, key: str, event: Event) -> None:
        self.sent.append((topic, key, event))

    async def send_raw(
        self, topic: str, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]] | None = None
    ) -> asyncio.Future[RecordMetadata]:
        self.sent.append((topic, key.decode() if key else None, value))
        done: asyncio.Future[RecordMetadata] = asyncio.get_running_loop().create_future()
        done.set_result(RecordMetadata(topic, 0, TopicPartition(topic, 0), len(self.sent) - 1, -1, 0, 0))
        return done

    async def flush(self) -> None:
        return None

    def on(self, topic: str) -> list[Any]:
        """What was sent to `topic`."""
        return [event for sent_to, _, event in self.sent if sent_to == topic]


class _NeverStarted(AIOKafkaConsumer):  # type: ignore[misc]
    """The unfed ledger's consumer: never started, so there is nothing to close and no "Unclosed" warning."""

    def __del__(self) -> None:
        pass


def channel(ledger: RunLedger, publisher: Publisher) -> RunChannel:
    """The run channel of a stage test: `ledger` and `publisher` over the test's topic names."""
    return RunChannel(ledger=ledger, publisher=publisher, topics=TOPICS)


def unfed_ledger(topic: str = "t.sync-runs") -> RunLedger:
    """A ledger that reads nothing: it knows what the stage under test published through it."""
    return RunLedger(_NeverStarted(), topic)


def fetching(request: TenantRequest, **fields: Any) -> FetchProgress:
    """The fetcher's record of `request` being fetched, with `fields` (pages, at, started_at, ...)."""
    return FetchProgress.begin(request).model_copy(update=fields)


class EmbeddingStage:
    """The embedder over the in-memory store, with the hashing encoder, a kept publisher and an unfed ledger;
    `item` makes the next item event of one partition."""

    def __init__(self, folder: Path) -> None:
        self.encoder = HashingEncoder(folder)
        self.store = ClientStore.memory("ragsync")
        self.publisher = KeptPublisher()
        self.ledger = unfed_ledger(TOPICS.sync_runs)
        self.embedder = Embedder(self.encoder, self.store, channel(self.ledger, self.publisher))
        self.offsets = 0

    def item(
        self,
        item_id: str,
        title: str | None,
        op: Literal["upsert", "delete"] = "upsert",
        run_id: str = "run-1",
        tenant_id: str = "acme",
        run_tenant_id: str | None = None,
    ) -> Delivered[ItemEvent]:
        """The next item event of `item_id` (tenant acme unless told, payment-service), at the next offset;
        `run_tenant_id`: the run's tenant, where the record names another."""
        event = ItemEvent(
            run_id=run_id,
            tenant_id=tenant_id,
            run_tenant_id=run_tenant_id,
            service="payment-service",
            item_id=item_id,
            op=op,
            page=1,
            record={"id": item_id, "title": title},
        )
        self.offsets += 1
        return Delivered(event, Position(TOPICS.items, 0, self.offsets - 1))

    async def __aenter__(self) -> Self:
        await self.embedder.prepare()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.store.close()


def nothing_stored() -> DeletionGuard:
    """The deletion guard over an empty in-memory store: no run has anything to delete."""
    return DeletionGuard(ClientStore.memory("ragsync"), DeletionBudget())
