"""The fetcher agent: consumes sync requests, pages through the Coordinator, emits one item event per record.

The agent itself is a faust-streaming agent (a consumer group over the sync-requests topic, offsets acknowledged
once a request is fully handled); `SyncRunner` does the work and is testable without faust.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ragsync.coordinator import CoordinatorClient, iterate_pages
from ragsync.coordinator.paging import PageQuery
from ragsync.coordinator.request import CallerIdentity
from ragsync.events import DeadLetter, ItemEvent, RunProgress, SyncRequest, describe_validation_error
from ragsync.kafka import Publisher
from ragsync.settings import Settings
from ragsync.topics import Topics
from streams.items import ItemError, item_id_of

log = logging.getLogger(__name__)


@dataclass
class FetchOutcome:
    """What one run's fetch did."""

    run_id: str
    service: str
    pages: int = 0
    items: int = 0
    dead_lettered: int = 0
    error: str | None = None


class SyncRunner:
    """Runs the fetch of one sync request: pages in, item events and run progress out."""

    def __init__(self, settings: Settings, client: CoordinatorClient, publisher: Publisher, topics: Topics) -> None:
        self._settings = settings
        self._client = client
        self._publisher = publisher
        self._topics = topics
        self._identity = CallerIdentity(settings.coordinator_tenant_id, settings.coordinator_user_id)

    async def run(self, request: SyncRequest) -> FetchOutcome:
        """Fetch every page of the request's service. Errors fail the run loudly; they do not raise."""
        tenant = request.tenant_id or self._settings.default_tenant_id
        outcome = FetchOutcome(run_id=request.run_id, service=request.service)
        await self._progress(request, tenant, status="fetching")
        query = PageQuery(
            service=request.service,
            sync_type=request.sync_type,
            limit=request.limit or self._settings.batch_sync_limit,
            since=request.since,
        )
        try:
            async for page in iterate_pages(
                self._client,
                self._identity,
                query,
                self._settings.batch_sync_timeout,
                self._settings.coordinator_max_pages,
            ):
                emitted, dead = await self._emit_page(request, tenant, page.number, page.records)
                outcome.pages += 1
                outcome.items += emitted
                outcome.dead_lettered += dead
                await self._progress(request, tenant, pages=1, items_fetched=emitted, dead_lettered=dead)
                # Items of a page are durable before the page counts as done.
                await self._publisher.flush()
        except Exception as error:  # noqa: BLE001 - any failure fails this run (loudly), not the agent
            outcome.error = str(error) or repr(error)
            log.error("run %s (%s) failed: %s", request.run_id, request.service, outcome.error)
            await self._progress(request, tenant, status="failed", error=outcome.error)
        else:
            await self._progress(request, tenant, status="fetched")
            log.info(
                "run %s (%s): fetched %d items in %d pages",
                request.run_id,
                request.service,
                outcome.items,
                outcome.pages,
            )
        await self._publisher.flush()
        return outcome

    async def _emit_page(
        self, request: SyncRequest, tenant: str, page: int, records: list[dict[str, Any]]
    ) -> tuple[int, int]:
        emitted = dead = 0
        for record in records:
            try:
                item_id = item_id_of(record, request.service)
            except ItemError as error:
                await self._dead_letter(request, tenant, page, record, str(error))
                dead += 1
                continue
            event = ItemEvent(
                run_id=request.run_id,
                tenant_id=tenant,
                service=request.service,
                item_id=item_id,
                page=page,
                record=record,
            )
            await self._publisher.send(self._topics.items, event.key, event)
            emitted += 1
        return emitted, dead

    async def _dead_letter(
        self, request: SyncRequest, tenant: str, page: int, record: dict[str, Any], reason: str
    ) -> None:
        log.warning("run %s page %d: dead-lettered a record: %s", request.run_id, page, reason)
        letter = DeadLetter(
            run_id=request.run_id,
            tenant_id=tenant,
            service=request.service,
            stage="fetcher",
            reason=f"page {page}: {reason}",
            source_topic=f"coordinator:{request.service}",
            original=json.dumps(record, ensure_ascii=False, default=str),
        )
        await self._publisher.send(self._topics.dead_letters, request.run_id, letter)

    async def _progress(self, request: SyncRequest, tenant: str, **changes: Any) -> None:
        event = RunProgress(
            run_id=request.run_id, tenant_id=tenant, service=request.service, source="fetcher", **changes
        )
        await self._publisher.send(self._topics.sync_runs, request.run_id, event)


async def reject_request(publisher: Publisher, topics: Topics, value: bytes, reason: str) -> None:
    """Dead-letter a sync request that is not valid: it is kept with the reason, never silently dropped."""
    log.error("rejected a sync request: %s", reason)
    letter = DeadLetter(
        run_id=None,
        tenant_id=None,
        service=None,
        stage="fetcher",
        reason=reason,
        source_topic=topics.sync_requests,
        original=value.decode("utf-8", errors="replace"),
    )
    await publisher.send(topics.dead_letters, "rejected", letter)
    await publisher.flush()


def parse_request(value: bytes) -> SyncRequest | str:
    """The request, or the reason it is not one (naming each bad field and value)."""
    try:
        return SyncRequest.model_validate_json(value)
    except ValidationError as error:
        return describe_validation_error(error)


def build_fetcher_app(
    settings: Settings, bootstrap_servers: str, runner: SyncRunner, publisher: Publisher, topics: Topics
) -> Any:
    """The faust app whose agent hands each sync request to `runner`."""
    import faust  # imported here: faust is heavy and only the fetcher needs it

    datadir = Path(settings.data_dir) / "fetcher"
    datadir.mkdir(parents=True, exist_ok=True)

    app = faust.App(
        f"{settings.kafka_topic_prefix}fetcher",
        broker=f"kafka://{bootstrap_servers}",
        value_serializer="raw",
        key_serializer="raw",
        web_enabled=False,
        topic_disable_leader=True,
        topic_allow_declare=False,
        broker_session_timeout=settings.kafka_session_timeout_ms / 1000,
        broker_heartbeat_interval=settings.kafka_heartbeat_interval_ms / 1000,
        producer_acks=-1,
        datadir=str(datadir),
    )
    requests_topic = app.topic(topics.sync_requests, value_type=bytes, key_type=bytes)

    @app.agent(requests_topic, concurrency=settings.fetcher_concurrency)
    async def fetch(stream: Any) -> None:
        async for value in stream:
            parsed = parse_request(value)
            if isinstance(parsed, str):
                await reject_request(publisher, topics, value, parsed)
                continue
            await runner.run(parsed)

    return app
