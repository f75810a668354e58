"""The run channel: what every stage that reads runs and reports on them shares (the ledger, the publisher and the
topics), passed as one object instead of three."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka.structs import RecordMetadata

from ragsync.events import Cursor, DeadLetter, RunRecord, SyncRequest, TenantRequest
from ragsync.messaging.dead_letters import send_dead_letter
from ragsync.messaging.kafka import Publisher
from ragsync.messaging.sync_requests import publish_requests
from ragsync.messaging.topics import Topics
from ragsync.runstate.ledger import RunLedger
from ragsync.runstate.runs import RunBook


@dataclass(frozen=True, kw_only=True)
class RunChannel:
    """The runs as this process knows them (`ledger`), and the way to change them: records on the run-state topic,
    sync requests and dead letters, all through one `publisher` to the `topics`."""

    ledger: RunLedger
    publisher: Publisher
    topics: Topics

    @property
    def book(self) -> RunBook:
        """Every run the ledger has folded."""
        return self.ledger.book

    async def report(self, *records: RunRecord | Cursor) -> None:
        """Publish run-state records, wait for the broker, and fold them here at once."""
        await self.ledger.publish(self.publisher, *records)

    async def announce(self, *records: RunRecord) -> None:
        """Publish run-state records and wait for the broker, without folding them here: this process reads them
        back from the topic like every other one does."""
        for record in records:
            await self.publisher.send(self.topics.sync_runs, record.key, record)
        await self.publisher.flush()

    async def forget(self, key: str) -> None:
        """Queue a tombstone for one run-state key: on the compacted topic the broker then drops its records."""
        await self.publisher.send_raw(self.topics.sync_runs, key.encode(), None)

    async def caught_up(self) -> None:
        """Wait until the ledger has read the run state to its end."""
        await self.ledger.caught_up()

    async def request(self, requests: Sequence[TenantRequest]) -> None:
        """Publish sync requests, each with its "queued" notice, and wait for the broker."""
        await publish_requests(self.publisher, self.topics, requests)

    async def send_request(self, key: str, request: SyncRequest) -> None:
        """Queue one sync request under `key`, with no "queued" notice: a request re-sent for a run that exists."""
        await self.publisher.send(self.topics.sync_requests, key, request)

    async def emit_item(self, key: bytes, event: bytes) -> asyncio.Future[RecordMetadata]:
        """Queue one encoded item event; the delivery says where the broker put it, once acknowledged."""
        return await self.publisher.send_raw(self.topics.items, key, event)

    async def dead_letter(self, letter: DeadLetter) -> None:
        """Queue a dead letter; the next flush delivers it."""
        await send_dead_letter(self.publisher, self.topics, letter)

    async def flush(self) -> None:
        """Wait until the broker has everything sent so far."""
        await self.publisher.flush()
