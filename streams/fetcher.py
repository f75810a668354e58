"""The fetcher agent: consumes sync requests, pages through the Coordinator, emits one item event per record.

The agent itself is a faust-streaming agent (a consumer group over the sync-requests topic; a request is
acknowledged once it is fully handled). A process that owns its broker (a one-shot run) reads the topic with
`read_requests` instead, with no group to join. `FetcherAgent` decides what to do with each request (run it, resume it
from its checkpoint, skip it because the service is already being synced) and `SyncRunner` does the fetching;
both are testable without faust.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord, RecordMetadata
from pydantic_core import PydanticSerializationError

from ragsync import keys
from ragsync.coordinator import CoordinatorClient, iterate_pages
from ragsync.coordinator.coordinator_errors import BadPageError
from ragsync.coordinator.paging import PageQuery
from ragsync.coordinator.request import TENANT_SCOPE_KEY, CallerIdentity
from ragsync.events import (
    DeadLetter,
    FetchProgress,
    ItemEvent,
    SyncRequest,
    TenantRequest,
    utc_now,
)
from ragsync.items import (
    MAX_DEPTH,
    NO_TENANT,
    OTHER_TENANT,
    ItemError,
    ItemRules,
    depth_of,
    record_text,
    repair_surrogates,
)
from ragsync.messaging.delivery import Position, Unreadable, decode_value
from ragsync.messaging.kafka import KafkaOptions, tls_context
from ragsync.messaging.topics import Topics
from ragsync.operations import metrics
from ragsync.operations.logs import about_run
from ragsync.operations.supervision import StageCrashLoopError, Supervisor, unless_stopped
from ragsync.runstate.channel import RunChannel
from ragsync.runstate.runs import RunState

if TYPE_CHECKING:
    import faust

log = logging.getLogger(__name__)


def encode_item(event: ItemEvent, max_bytes: int) -> bytes:
    """The item event's bytes; lone surrogates repaired, `ItemError` if it nests too deep or is too large."""
    try:
        data = event.to_bytes()
    except PydanticSerializationError as error:
        depth = depth_of(event.record)
        if depth > MAX_DEPTH:
            raise ItemError(
                f"record nests {depth} levels deep, too deep to encode as an item event", "too deep"
            ) from error
        repaired = event.model_copy(update={"record": repair_surrogates(event.record)})
        data = repaired.to_bytes()
        log.warning("item %s: lone surrogates in the record were replaced by U+FFFD", event.key)
    if len(data) > max_bytes:
        raise ItemError(
            f"record is {len(data):,} bytes as an item event, over ITEM_MAX_BYTES={max_bytes:,}", "over ITEM_MAX_BYTES"
        )
    return data


@dataclass
class FetchOutcome:
    """What one run's fetch did."""

    run_id: str
    service: str
    pages: int = 0
    items: int = 0
    dead_lettered: int = 0
    error: str | None = None


@dataclass(frozen=True, kw_only=True)
class FetchLimits:
    """How the fetcher calls the Coordinator and sizes item events."""

    identity: CallerIdentity = field(default_factory=CallerIdentity)
    page_limit: int = 1000
    call_timeout_s: float = 300.0
    max_pages: int = 100_000
    item_max_bytes: int = 1_000_000
    default_tenant: str = "default-tenant"  # a request for it syncs the whole service, whatever tenants it holds


class SyncRunner:
    """Runs the fetch of one sync request: pages in, item events and run progress out."""

    def __init__(
        self,
        limits: FetchLimits,
        client: CoordinatorClient,
        channel: RunChannel,
        rules: ItemRules | None = None,
    ) -> None:
        self._limits = limits
        self._client = client
        self._channel = channel
        self._rules = rules or ItemRules()
        self._identity = limits.identity

    async def run(self, request: TenantRequest, resume: FetchProgress | None = None) -> FetchOutcome:
        """Fetch every page after `resume`'s checkpoint (all of them without one). Errors fail the run loudly;
        they do not raise."""
        with about_run(request.run_id, request.tenant_id, request.service):
            return await self._fetch(request, resume)

    async def _fetch(self, request: TenantRequest, resume: FetchProgress | None) -> FetchOutcome:
        outcome = FetchOutcome(run_id=request.run_id, service=request.service)
        first_page = resume.pages + 1 if resume else 1
        state = self._record(request, resume)
        await self._publish(state)
        pages = iterate_pages(
            self._client,
            self._identity,
            self._query(request, first_page),
            self._limits.call_timeout_s,
            self._limits.max_pages,
        )
        try:
            async for page in pages:
                state = await self._store_page(request, page.number, page.records, state, outcome)
                if not page.has_more:
                    state = _changed(state, last_page=page.describe())
                del page  # let the page go while the next one is fetched: its memory is counted once per run
        except Exception as error:  # noqa: BLE001 - any failure fails this run (loudly), not the agent
            outcome.error = str(error) or repr(error)
            log.error("run %s (%s) failed: %s", request.run_id, request.service, outcome.error)
            if isinstance(error, BadPageError):
                log.error("run %s: the bad page starts with %r", request.run_id, error.start)
            metrics.RUNS_FAILED.labels(metrics.service_label(request.service)).inc()
            await self._publish(_changed(state, status="failed", error=outcome.error))
        else:
            await self._publish(_changed(state, status="fetched"))
            log.info(
                "run %s (%s): fetched %d items in %d pages from page %d",
                request.run_id,
                request.service,
                outcome.items,
                outcome.pages,
                first_page,
            )
        return outcome

    def _query(self, request: TenantRequest, first_page: int) -> PageQuery:
        limit = request.limit or self._limits.page_limit
        return PageQuery(request.service, request.sync_type, limit, request.since, first_page, self._scope(request))

    def _scope(self, request: TenantRequest) -> str | None:
        """The one tenant whose records the run is for, when the request names one; None for a request of the
        default tenant: the whole service, each record under the tenant it names (its schema's tenant_field)."""
        return None if request.tenant_id == self._limits.default_tenant else request.tenant_id

    async def _store_page(
        self,
        request: TenantRequest,
        number: int,
        records: list[dict[str, Any]],
        state: FetchProgress,
        outcome: FetchOutcome,
    ) -> FetchProgress:
        """Emit a page's item events and record the page as done. Its items are durable before the page counts
        as done (the checkpoint), and their offsets are the run's marks, which completion is decided against."""
        deliveries, dead = await self._emit_page(request, number, records)
        await self._channel.flush()
        landed = await asyncio.gather(*deliveries)
        state = _after_page(state, number, landed, dead)
        await self._publish(state)
        outcome.pages, outcome.items = outcome.pages + 1, outcome.items + len(landed)
        outcome.dead_lettered += len(dead)
        service = metrics.service_label(request.service)
        metrics.PAGES.labels(service).inc()
        metrics.ITEMS.labels(metrics.stage_label("fetched"), service).inc(len(landed))
        return state

    def _record(self, request: TenantRequest, resume: FetchProgress | None) -> FetchProgress:
        if resume is not None:
            return _changed(resume, status="fetching", error=None)  # the request as first recorded
        names_tenants = self._rules.schema(request.service).names_tenants
        return FetchProgress.begin(request, all_tenants=names_tenants and self._scope(request) is None)

    async def _publish(self, state: FetchProgress) -> None:
        await self._channel.announce(state)

    async def _emit_page(
        self, request: TenantRequest, page: int, records: list[dict[str, Any]]
    ) -> tuple[list[asyncio.Future[RecordMetadata]], list[ItemError]]:
        """Emit a page's item events: their deliveries, and why each record that could not be one was
        dead-lettered."""
        tenant, scope = request.tenant_id, self._scope(request)
        seen: set[tuple[str, str]] = set()  # by tenant too: two tenants' records may share an id
        deliveries = []
        dead: list[ItemError] = []
        for record in records:
            try:
                event = self._item_event(request, scope, page, record, seen)
                data = encode_item(event, self._limits.item_max_bytes)
            except ItemError as error:
                await self._dead_letter(request, tenant, page, record, str(error))
                dead.append(error)
                continue
            seen.add((event.tenant_id, event.item_id))
            deliveries.append(await self._channel.emit_item(event.key.encode(), data))
        return deliveries, dead

    def _item_event(
        self, request: TenantRequest, scope: str | None, page: int, record: Any, seen: set[tuple[str, str]]
    ) -> ItemEvent:
        """The record as an item event of the run; `ItemError` when it cannot be one: no usable id, an id seen
        earlier in the page, or a tenant outside the run's scope (never stored under the request's tenant)."""
        item = self._rules.read(record, request.service, request.tenant_id)
        if (item.tenant_id, item.item_id) in seen:
            raise ItemError(
                f"{request.service} record id {item.item_id!r} appears twice in page {page} (tenant "
                f"{item.tenant_id!r})",
                "duplicate id",
            )
        if scope is not None and not item.names_tenant and self._rules.schema(request.service).names_tenants:
            raise ItemError(
                f"{request.service} record {item.item_id!r} names no tenant, and the request is for tenant {scope!r}: "
                "whose it is cannot be told (a Coordinator that did not scope its answer sends every tenant's)",
                NO_TENANT,
            )
        if scope is not None and item.tenant_id != scope:
            raise ItemError(
                f"{request.service} record {item.item_id!r} names tenant {item.tenant_id!r}, but the request is for "
                f"tenant {scope!r}: the Coordinator did not scope its answer ({TENANT_SCOPE_KEY})",
                OTHER_TENANT,
            )
        return ItemEvent(
            run_id=request.run_id,
            tenant_id=item.tenant_id,
            run_tenant_id=request.tenant_id if item.tenant_id != request.tenant_id else None,
            service=request.service,
            item_id=item.item_id,
            op="delete" if item.deleted else "upsert",
            page=page,
            sync_type=request.sync_type,
            record=record,
        )

    async def _dead_letter(self, request: TenantRequest, tenant: str, page: int, record: Any, reason: str) -> None:
        log.warning("run %s page %d: dead-lettered a record: %s", request.run_id, page, reason)
        letter = DeadLetter(
            run_id=request.run_id,
            tenant_id=tenant,
            service=request.service,
            stage="fetcher",
            reason=f"page {page}: {reason}",
            source_topic=f"coordinator:{request.service}",
            original=record_text(record),
        )
        await self._channel.dead_letter(letter)


def _changed(state: FetchProgress, **changes: Any) -> FetchProgress:
    """The fetcher's record with `changes`, stamped now."""
    return state.model_copy(update={**changes, "at": utc_now()})


def _after_page(state: FetchProgress, page: int, landed: list[RecordMetadata], dead: list[ItemError]) -> FetchProgress:
    """The record after `page`: the checkpoint, the counts (dead letters by kind, with the first reason of each
    kind), and each partition's highest offset so far."""
    examples = {error.kind: str(error)[:500] for error in reversed(dead)} | state.dead_examples
    marks = dict(state.marks)
    for meta in landed:
        marks[meta.partition] = max(marks.get(meta.partition, -1), meta.offset)
    return _changed(
        state,
        pages=page,
        produced=state.produced + len(landed),
        dead_lettered=state.dead_lettered + len(dead),
        dead_reasons=dict(Counter(state.dead_reasons) + Counter(error.kind for error in dead)),
        dead_examples=examples,
        marks=marks,
    )


class FetcherAgent:
    """Decides, for each sync request, whether to run it, resume it or skip it; then runs it."""

    def __init__(
        self,
        runner: SyncRunner,
        channel: RunChannel,
        *,
        default_tenant: str,
        stall_timeout_s: float,
    ) -> None:
        self._default_tenant = default_tenant
        self._stall_timeout_s = stall_timeout_s  # a run with progress this recent is live, and blocks another
        self._runner = runner
        self._channel = channel
        self._fetching: dict[tuple[str, str], str] = {}  # (tenant, service) -> run id fetched by this process

    async def receive(self, key: bytes | None, value: bytes | None, at: Position) -> FetchOutcome | None:
        """The edge: one message of the sync-requests topic at `at`, decoded and handled (or dead-lettered with
        the bad fields named); the outcome when a fetch ran."""
        decoded = decode_value(SyncRequest, value, at)
        if isinstance(decoded, Unreadable):
            await self._reject(decoded)
            return None
        return await self.handle(decoded.event, key.decode("utf-8", errors="replace") if key is not None else None)

    async def handle(self, received: SyncRequest, key: str | None) -> FetchOutcome | None:
        """Handle one sync request that arrived under `key`; the outcome when a fetch ran."""
        request = received.for_tenant(self._default_tenant)
        wanted_key = keys.request_key(request.tenant_id, request.service)
        if key != wanted_key:
            # Re-key, so that every request of a tenant/service reaches the one replica owning its partition.
            await self._channel.send_request(wanted_key, request)
            await self._channel.flush()
            return None
        await self._channel.caught_up()
        return await self._dispatch(request)

    async def _dispatch(self, request: TenantRequest) -> FetchOutcome | None:
        run = self._channel.book.get(request.run_id)
        if run is not None and (run.tenant_id, run.service) != (request.tenant_id, request.service):
            await self._refuse_reused_id(request, run)
            return None
        if run is not None and run.finished:
            log.info("run %s is already %s; redelivered request ignored", request.run_id, run.status)
            return None
        slot = (request.tenant_id, request.service)
        if self._fetching.get(slot) == request.run_id:
            log.info("run %s is being fetched by this fetcher already; re-request ignored", request.run_id)
            return None
        blocker = self._blocking_run(request)
        if blocker is not None:
            await self._skip(request, blocker)
            return None
        request = self._with_since(request)
        resume = run.fetch if run is not None else None
        if resume is not None and resume.pages:
            log.warning(
                "run %s (%s) resumes from page %d (checkpoint)", request.run_id, request.service, resume.pages + 1
            )
        self._fetching[slot] = request.run_id
        try:
            return await self._runner.run(request, resume)
        finally:
            self._fetching.pop(slot, None)

    def _with_since(self, request: TenantRequest) -> TenantRequest:
        """An incremental request without `since` starts where the last successful run started."""
        if request.sync_type != "incremental" or request.since is not None:
            return request
        last = self._channel.book.last_success(request.tenant_id, request.service)
        if last is None or last.started_at is None:
            log.warning("incremental sync of %s: no successful run yet, so every record is fetched", request.service)
            return request
        log.info(
            "incremental sync of %s: records changed since %s (run %s)",
            request.service,
            last.started_at.isoformat(),
            last.run_id,
        )
        return request.model_copy(update={"since": last.started_at})

    def _blocking_run(self, request: TenantRequest) -> str | None:
        """Another run of the same tenant and service that is live (here, or anywhere with recent progress)."""
        here = self._fetching.get((request.tenant_id, request.service))
        if here is not None:
            return here
        now = datetime.now(UTC)
        for other in self._channel.book.active():
            if (
                other.run_id != request.run_id
                and other.tenant_id == request.tenant_id
                and other.service == request.service
                and self._is_live(other, now)
            ):
                return other.run_id
        return None

    def _is_live(self, run: RunState, now: datetime) -> bool:
        if run.status == "queued" or run.last_progress_at is None:
            return False
        return (now - run.last_progress_at).total_seconds() < self._stall_timeout_s

    async def _reject(self, bad: Unreadable) -> None:
        """Dead-letter a message that is no valid sync request: kept with the reason, never silently dropped."""
        log.error("rejected a sync request at %s[%d]@%d: %s", bad.at.topic, bad.at.partition, bad.at.offset, bad.reason)
        metrics.UNREADABLE_EVENTS.labels(topic="sync-requests").inc()
        letter = DeadLetter(
            run_id=None,
            tenant_id=None,
            service=None,
            stage="fetcher",
            reason=bad.reason,
            source_topic=bad.at.topic,
            source_partition=bad.at.partition,
            source_offset=bad.at.offset,
            original=bad.original,
        )
        await self._channel.dead_letter(letter)
        await self._channel.flush()

    async def _refuse_reused_id(self, request: TenantRequest, run: RunState) -> None:
        """Dead-letter a request whose run id belongs to another tenant's or service's run: honoured, it would take
        over that run's checkpoint and run state."""
        reason = (
            f"run id {request.run_id!r} belongs to a run of {run.tenant_id}/{run.service}; a request for "
            f"{request.tenant_id}/{request.service} may not reuse it: publish it without run_id to get a new one"
        )
        log.error("rejected a sync request: %s", reason)
        metrics.UNREADABLE_EVENTS.labels(topic="sync-requests").inc()
        letter = DeadLetter(
            run_id=request.run_id,
            tenant_id=request.tenant_id,
            service=request.service,
            stage="fetcher",
            reason=reason,
            source_topic=self._channel.topics.sync_requests,
            original=request.to_bytes().decode(),
        )
        await self._channel.dead_letter(letter)
        await self._channel.flush()

    async def _skip(self, request: TenantRequest, blocker: str) -> None:
        reason = f"run {blocker} of {request.tenant_id}/{request.service} is still active"
        log.warning("request %s skipped: %s", request.run_id, reason)
        metrics.RUNS_SKIPPED.labels(metrics.service_label(request.service)).inc()
        record = FetchProgress(
            run_id=request.run_id,
            tenant_id=request.tenant_id,
            service=request.service,
            request=request,
            status="skipped",
            error=reason,
        )
        await self._channel.announce(record)


@dataclass(frozen=True, kw_only=True)
class FetcherGroup:
    """The fetcher consumer group: its name, the folder its faust app keeps state in, and how many sync requests
    one process handles at once (FETCHER_CONCURRENCY)."""

    name: str
    data_dir: Path
    concurrency: int = 4


def build_fetcher_app(
    group: FetcherGroup,
    kafka: KafkaOptions,
    agent: FetcherAgent,
    topics: Topics,
    supervisor: Supervisor,
    stop: asyncio.Event,
) -> Any:
    """The faust app whose agent hands each sync request to `agent`. A request whose handling raises is handled
    again after a backoff (supervised: logged, counted, shown on /readyz), never skipped; past STAGE_MAX_CRASHES
    the supervisor gives up and the fetcher's process stops."""
    app = _faust_app(group, kafka)
    requests_topic = app.topic(topics.sync_requests, value_type=bytes, key_type=bytes)

    @app.agent(requests_topic, concurrency=group.concurrency)
    async def fetch(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            at = Position(message.topic, message.partition, message.offset)
            await supervisor.run("fetch agent", functools.partial(agent.receive, event.key, event.value, at), stop)

    return app


async def read_requests(
    consumer: AIOKafkaConsumer, agent: FetcherAgent, supervisor: Supervisor, stop: asyncio.Event, concurrency: int
) -> None:
    """Hand each sync request on `consumer`'s assigned partitions to `agent`, `concurrency` at a time (as the faust
    agent's instances), until `stop` is set. Each request is supervised as in the faust agent. For a process that
    owns its broker: nothing is committed, since a broker started for one command keeps nothing after it."""
    slots = asyncio.Semaphore(concurrency)
    handling: set[asyncio.Task[None]] = set()

    async def receive(message: ConsumerRecord[bytes, bytes]) -> None:
        at = Position(message.topic, message.partition, message.offset)
        try:
            await supervisor.run("fetch agent", functools.partial(agent.receive, message.key, message.value, at), stop)
        except StageCrashLoopError:
            pass  # the supervisor has already logged it and set `gave_up_event`, which stops the component
        finally:
            slots.release()

    try:
        while not stop.is_set():
            batch = await unless_stopped(consumer.getmany(timeout_ms=200), stop) or {}
            for message in (m for records in batch.values() for m in records):
                await slots.acquire()
                task = asyncio.create_task(receive(message))
                handling.add(task)
                task.add_done_callback(handling.discard)
    finally:
        for task in handling:
            task.cancel()
        await asyncio.gather(*handling, return_exceptions=True)


def _faust_app(group: FetcherGroup, kafka: KafkaOptions) -> faust.App:
    """The faust app of the fetcher group: raw bytes in, the broker's security, our fetch wait."""
    import faust  # imported here: faust is heavy and only the fetcher needs it

    from ragsync.streams.faust_transport import Transport

    group.data_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        group.name,
        broker=f"kafka://{kafka.bootstrap_servers}",
        value_serializer="raw",
        key_serializer="raw",
        web_enabled=False,
        topic_disable_leader=True,
        topic_allow_declare=False,
        broker_session_timeout=kafka.session_timeout_ms / 1000,
        broker_heartbeat_interval=kafka.heartbeat_interval_ms / 1000,
        producer_acks=-1,
        datadir=str(group.data_dir),
        broker_credentials=faust_credentials(kafka),
    )
    # Set before the first topic is declared: declaring one creates the transport.
    app.transport = Transport(app.conf.broker_consumer, app, fetch_max_wait_ms=kafka.fetch_max_wait_ms)
    return app


def faust_credentials(kafka: KafkaOptions) -> Any:
    """The faust form of the Kafka security settings (the same protocol, TLS context and login as every other
    client), or None for plaintext."""
    import faust

    context = tls_context(kafka)
    if kafka.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=kafka.sasl_username,
            password=kafka.sasl_password,
            mechanism=kafka.sasl_mechanism,
            ssl_context=context,
        )
    return faust.SSLCredentials(context) if context is not None else None
