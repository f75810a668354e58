"""The app object: builds each stage from settings, with its collaborators passed in.

Every `run_*` coroutine is one long-running component and returns when `stop` is set; the CLI runs one of them
per process in a deployment (with its ops endpoints), and `demo`/`sync` run them all in one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import grpc
from aiokafka import AIOKafkaConsumer
from prometheus_client import REGISTRY

from ragsync.coordinator import CoordinatorClient, Signer
from ragsync.coordinator.tls import ChannelTls
from ragsync.errors import SetupError
from ragsync.items import ItemRules
from ragsync.messaging.kafka import Committed, Publisher, assign_every_partition, make_consumer, start_client
from ragsync.messaging.sync_requests import RequestDefaults
from ragsync.messaging.topics import Topics, ensure_topics
from ragsync.model.encoder import TextEncoder
from ragsync.model.encoder_process import ProcessEncoder
from ragsync.operations import metrics
from ragsync.operations.endpoints import DEFAULT_PORTS, Action, Check, OpsServer, OpsTokens
from ragsync.operations.supervision import Restarts, Supervisor
from ragsync.runstate.deletions import DeletionBudget, DeletionGuard, PruneConfirmations
from ragsync.runstate.ledger import RunLedger
from ragsync.schemas import Schemas
from ragsync.settings import Settings, reveal
from ragsync.store import VectorStore, open_store
from ragsync.store.space import MB, StoreSpace

if TYPE_CHECKING:  # the stages are imported where they are built: a command that runs none loads none
    from ragsync.streams.completion import RunCompletion
    from ragsync.streams.embedder import Embedder, EmbeddingConsumer
    from ragsync.streams.fetcher import FetcherAgent
    from ragsync.streams.pruner import Pruner
    from ragsync.streams.related import RelatedConsumer

log = logging.getLogger(__name__)
PROMPT_FETCH_MAX_WAIT_MS = 50  # the fetch wait of a ledger that `caught_up` and `wait` are called on
SPACE_RECHECK_S = 2.0  # how often a disk too full to open the store on is looked at again


class App:
    """ragsync's stages, wired from one `Settings` against one broker."""

    def __init__(self, settings: Settings, bootstrap_servers: str | None = None, exclusive: bool = False) -> None:
        """`exclusive`: this process is the broker's only client (a local broker started for one command), so
        its consumers take every partition directly: no group to join, which costs seconds per group."""
        self.settings = settings
        metrics.label_services(settings.batch_sync_services)  # every other service's series is `other`
        self.bootstrap_servers = bootstrap_servers or settings.bootstrap_servers
        self.topics = Topics.from_settings(settings)
        self.exclusive = exclusive
        self.related: RelatedConsumer | None = None  # the related-content stage while the embedders run (if on)

    async def ensure_topics(self) -> Topics:
        """Create the topics that are missing."""
        return await ensure_topics(self.settings, self.bootstrap_servers)

    def signer(self) -> Signer | None:
        """The call signer from RAG_PRIVATE_KEY; a malformed key raises `SigningKeyError` here, at start-up."""
        key = reveal(self.settings.rag_private_key)
        return Signer.from_env_value(key) if key else None

    def coordinator_client(self, endpoint: str | None = None) -> CoordinatorClient:
        """A client for COORDINATOR_GRPC_ENDPOINT (or `endpoint`)."""
        s = self.settings
        return CoordinatorClient(
            endpoint or s.coordinator_grpc_endpoint,
            self.signer(),
            s.coordinator_max_attempts,
            s.coordinator_backoff_initial,
            s.coordinator_backoff_max,
            s.coordinator_max_message_bytes,
            ChannelTls(s.coordinator_tls_ca, s.coordinator_tls_cert, s.coordinator_tls_key)
            if s.coordinator_tls_ca
            else None,
        )

    def supervisor(self, component: str) -> Supervisor:
        """Restarts the component's crashed stages (STAGE_MAX_CRASHES within STAGE_CRASH_WINDOW_S stop it)."""
        restarts = Restarts(self.settings.stage_max_crashes, self.settings.stage_crash_window_s)
        return Supervisor(component, restarts)

    def encoder(self) -> TextEncoder:
        """The embedding model (loads on first use)."""
        s = self.settings
        kind = ProcessEncoder if s.embedding_process else TextEncoder
        return kind(
            s.embedding_model,
            s.embedding_batch_size,
            s.torch_threads,
            s.embedding_backend,
            s.embedding_precision,
            s.data_dir / "models",
        )

    def item_rules(self) -> ItemRules:
        """How records become items: the schemas in SCHEMAS_DIR and the built-in ones (validated here)."""
        return ItemRules(Schemas.load(self.settings.schemas_dir))

    @contextlib.asynccontextmanager
    async def publisher(self) -> AsyncIterator[Publisher]:
        """A started publisher, flushed and stopped on exit."""
        publisher = Publisher.from_settings(self.settings, self.bootstrap_servers)
        await publisher.start()
        try:
            yield publisher
        finally:
            await publisher.stop()

    @contextlib.asynccontextmanager
    async def ledger(
        self, from_beginning: bool = True, prompt: bool = True, supervisor: Supervisor | None = None
    ) -> AsyncIterator[RunLedger]:
        """A run ledger following the sync-runs topic (from its beginning: every run; from its end: new ones).

        A prompt ledger's fetches wait 50 ms at most: `caught_up` and `wait` return after a fetch answered later
        than the event, and a broker may hold an idle fetch for the whole wait. The others wait as long as the
        `kafka_fetch_max_wait_ms` setting says, which costs the broker and this process fewer empty fetches.
        A component passes its `supervisor`, which restarts the follower and stops the process if the topic is lost.
        """
        wait = PROMPT_FETCH_MAX_WAIT_MS if prompt else None
        # Small fetches: the run state is small records, and a long history read at start-up must not hold
        # 16 MB fetches and their decoded records at once (measured: +37 MB peak RSS at 10M items of history).
        consumer = make_consumer(
            self.settings, self.bootstrap_servers, group_id=None, fetch_max_wait_ms=wait, fetch_max_mb=1
        )
        ledger = RunLedger(consumer, self.topics.sync_runs, from_beginning)
        await ledger.start(supervisor)
        try:
            yield ledger
        finally:
            await ledger.stop()

    @contextlib.asynccontextmanager
    async def ops(
        self,
        component: str,
        status: Callable[[], dict[str, Any]],
        checks: dict[str, Check],
        enabled: bool,
        admin: Mapping[str, Action] | None = None,
    ) -> AsyncIterator[OpsServer | None]:
        """The component's /healthz, /readyz, /status and /metrics while the block runs (when enabled)."""
        if not enabled:
            yield None
            return
        port = self.settings.ops_port if self.settings.ops_port is not None else DEFAULT_PORTS[component]
        server = OpsServer(
            component,
            self.settings.ops_host,
            port,
            status,
            checks,
            admin,
            OpsTokens(ops=reveal(self.settings.ops_token), admin=reveal(self.settings.admin_token)),
        )
        await server.start()
        try:
            yield server
        finally:
            await server.stop()

    async def run_fetcher(
        self, stop: asyncio.Event, coordinator_endpoint: str | None = None, serve_ops: bool = False
    ) -> None:
        """The fetcher agent: sync requests in, item events out."""
        from ragsync.streams.fetcher import FetcherAgent, FetchLimits, SyncRunner

        if not self.settings.coordinator_enabled:
            raise SetupError("COORDINATOR_ENABLED=false: the fetcher has nothing to fetch from; set it to true")
        rules = self.item_rules()  # a bad schema or RAG_PRIVATE_KEY fails here, before anything connects
        client = self.coordinator_client(coordinator_endpoint)
        await self.ensure_topics()
        supervisor = self.supervisor("fetcher")
        async with self.publisher() as publisher, client, self.ledger(supervisor=supervisor) as ledger:
            s = self.settings
            runner = SyncRunner(FetchLimits.from_settings(s), client, publisher, self.topics, rules)
            agent = FetcherAgent(
                runner,
                ledger,
                publisher,
                self.topics,
                default_tenant=s.default_tenant_id,
                stall_timeout_s=s.run_stall_timeout,
            )
            checks = {
                "broker": _ledger_check(ledger),
                "coordinator": _channel_check(client),
                "stages": supervisor.check,
            }
            async with self._requests_to(agent, supervisor, stop):
                log.info("fetcher agent consuming %s, Coordinator at %s", self.topics.sync_requests, client.endpoint)
                async with self.ops("fetcher", lambda: _runs_status(ledger), checks, serve_ops):
                    await supervisor.until_stopped(stop)

    @contextlib.asynccontextmanager
    async def _requests_to(
        self, agent: FetcherAgent, supervisor: Supervisor, stop: asyncio.Event
    ) -> AsyncIterator[None]:
        """Sync requests reach `agent` while the block runs: through the fetcher group's faust agent, or, in an
        exclusive process, from every partition directly."""
        from ragsync.streams.fetcher import build_fetcher_app, read_requests

        if not self.exclusive:
            faust_app = build_fetcher_app(self.settings, self.bootstrap_servers, agent, self.topics, supervisor, stop)
            await faust_app.start()
            try:
                yield
            finally:
                await faust_app.stop()
            return
        consumer = make_consumer(self.settings, self.bootstrap_servers, group_id=None)
        await start_client(consumer)
        try:
            await assign_every_partition([consumer], self.topics.sync_requests)
            concurrency = self.settings.fetcher_concurrency
            reading = asyncio.ensure_future(
                supervisor.run("requests", lambda: read_requests(consumer, agent, supervisor, stop, concurrency), stop)
            )
            try:
                yield
            finally:
                reading.cancel()
                await asyncio.gather(reading, return_exceptions=True)
        finally:
            await consumer.stop()

    async def run_embedders(
        self,
        stop: asyncio.Event,
        count: int = 1,
        store: VectorStore | None = None,
        encoder: TextEncoder | None = None,
        serve_ops: bool = False,
        load_model: bool = True,
    ) -> None:
        """`count` members of the embedding consumer group, sharing one model and one store. The model loads at
        start (`load_model`: a deployment is ready once it has), or else when a batch first needs it."""
        rules = self.item_rules()  # a bad schema fails here, before anything connects
        await self.ensure_topics()
        own_store = store is None
        if own_store and not await self._space_to_open(stop, serve_ops):
            return
        store = store or open_store(self.settings)
        own_encoder = encoder is None
        encoder = encoder or self.encoder()
        try:
            if load_model:
                await encoder.load_async()
            await self._embed(stop, count, store, encoder, rules, serve_ops)
        finally:
            if own_encoder:
                encoder.close()
            if own_store:
                store.close()

    async def _embed(
        self,
        stop: asyncio.Event,
        count: int,
        store: VectorStore,
        encoder: TextEncoder,
        rules: ItemRules,
        serve_ops: bool,
    ) -> None:
        from ragsync.streams.completion import RunCompletion
        from ragsync.streams.embedder import Embedder
        from ragsync.streams.migration import ModelMigration
        from ragsync.streams.pruner import Pruner

        supervisor = self.supervisor("embedder")
        # Nothing here waits on the ledger's promptness, and this process's cores belong to the encoder.
        async with self.publisher() as publisher, self.ledger(prompt=False, supervisor=supervisor) as ledger:
            embedder = Embedder(encoder, store, publisher, self.topics, ledger, rules)
            await embedder.prepare()
            guard = DeletionGuard(store, self.deletion_budget())
            pruner = Pruner(store, ledger, publisher, guard)
            for service in self.settings.batch_sync_services:  # a counter alerts see rise from 0, not appear at 1
                metrics.DELETIONS_HELD.labels(service)
            consumers = [self._items_consumer(self.embedder_group) for _ in range(count)]
            space = self.store_space()
            share = self.settings.run_max_dead_letter_share
            completion = RunCompletion(ledger, publisher, self.topics, consumers[0].committed, guard, share)
            stages: dict[str, Callable[[], Awaitable[object]]] = {
                "pruner": lambda: pruner.run(stop),
                "completion": lambda: completion.run(stop),
            }
            if embedder.migrating:
                defaults = RequestDefaults.from_settings(self.settings)
                migration = ModelMigration(defaults, store, ledger, publisher, self.topics)
                stages["migration"] = lambda: migration.run(stop)
            members: list[EmbeddingConsumer] = []

            def busy() -> bool:
                return any(member.busy for member in members)

            related = self._related_stage(store, consumers[0].committed, busy) if self.settings.related_edges else None
            clients = consumers + ([related.consumer] if related else [])
            await asyncio.gather(*(start_client(c) for c in clients))
            if self.exclusive:
                await assign_every_partition(consumers, self.topics.items)
            woken = [completion.wake] + ([related.wake] if related else [])
            members += [self._embedding_member(c, embedder, _each(woken), space) for c in consumers]
            for n, member in enumerate(members, 1):
                stages[f"consumer {n}"] = lambda m=member: m.run(stop)  # type: ignore[misc]
            if related is not None:
                if self.exclusive:
                    await assign_every_partition([related.consumer], self.topics.items)
                stages["related edges"] = lambda: related.run(stop)
            log.info("%d embedder consumer(s) in group %s", count, self.embedder_group)
            status = _embedder_status(members, space, pruner, completion, related, ledger)
            checks = _embedder_checks(store, encoder, members, space, supervisor, related)
            admin = {"prune": PruneConfirmations(ledger, publisher).over_http}
            self.related = related
            try:
                async with self.ops("embedder", status, checks, serve_ops, admin):
                    await supervisor.run_stages(stages, stop)
            finally:
                self.related = None
                await asyncio.gather(*(c.stop() for c in clients), return_exceptions=True)

    def _embedding_member(
        self, consumer: AIOKafkaConsumer, embedder: Embedder, on_commit: Callable[[], None], space: StoreSpace | None
    ) -> EmbeddingConsumer:
        from ragsync.streams.embedder import EmbeddingConsumer

        s = self.settings
        return EmbeddingConsumer(
            consumer,
            embedder,
            s.embedder_max_batch,
            s.embedder_poll_timeout_ms,
            keepalive_seconds=s.kafka_max_poll_interval_ms / 1000 / 3,
            on_commit=on_commit,
            space=space,
            in_group=not self.exclusive,
        )

    def _related_stage(
        self, store: VectorStore, stored_up_to: Committed, embedders_busy: Callable[[], bool]
    ) -> RelatedConsumer:
        """The related-content stage: its own consumer group on the items, behind the embedder group's commits,
        yielding to this process's embedders while they have items."""
        from ragsync.store.related_edges import RelatedRules
        from ragsync.streams.related import RelatedConsumer, RelatedEdges

        s = self.settings
        consumer = self._items_consumer(self.related_group)
        edges = RelatedEdges(store, RelatedRules.from_settings(s))
        log.info(
            "related-content edges on: top %d at %.2f or more, group %s",
            s.related_top_k,
            s.related_min_score,
            self.related_group,
        )
        return RelatedConsumer(consumer, edges, stored_up_to, s.related_max_batch, embedders_busy=embedders_busy)

    async def _space_to_open(self, stop: asyncio.Event, serve_ops: bool) -> bool:
        """Wait, before the embedded store opens, until its disk has STORE_MIN_FREE_MB free: it maps its files,
        and opening it on a full disk kills the process with SIGBUS, without a word. Meanwhile /readyz answers 503
        with `disk`. False when `stop` was set first."""
        space = self.store_space()
        shortage = space.shortage() if space is not None else None
        if space is None or shortage is None:
            return True
        log.error("%s; the store is not opened until then", shortage)
        metrics.STORE_SPACE_PAUSES.inc()
        status = {"waiting_for_disk": shortage}
        async with self.ops("embedder", lambda: status, {"disk": _space_check(space)}, serve_ops):
            while (shortage := space.shortage()) is not None and not stop.is_set():
                status["waiting_for_disk"] = shortage
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), SPACE_RECHECK_S)
        if not stop.is_set():
            log.warning("the store's disk has room again: opening the store")
        return not stop.is_set()

    def deletion_budget(self) -> DeletionBudget:
        """What a run may delete without a person: RUN_MAX_DELETE_SHARE and RUN_MIN_DELETE_HOLD."""
        s = self.settings
        return DeletionBudget(max_share=s.run_max_delete_share, min_hold=s.run_min_delete_hold)

    def store_space(self) -> StoreSpace | None:
        """The watch on the embedded store's disk (None for a Qdrant server, or with STORE_MIN_FREE_MB=0)."""
        s = self.settings
        if s.qdrant_url or not s.store_min_free_mb:
            return None
        return StoreSpace(s.qdrant_path, int(s.store_min_free_mb * MB))

    @property
    def embedder_group(self) -> str:
        """The embedding consumer group's id."""
        return f"{self.settings.kafka_topic_prefix}embedder"

    @property
    def related_group(self) -> str:
        """The related-content stage's consumer group's id."""
        return f"{self.settings.kafka_topic_prefix}related"

    def _items_consumer(self, group: str) -> AIOKafkaConsumer:
        """A consumer of the items topic in `group`; an exclusive process assigns its partitions itself. In the
        group either way: the run completion reads the embedder group's committed offsets, and each stage commits
        its own."""
        topics = () if self.exclusive else (self.topics.items,)
        return make_consumer(self.settings, self.bootstrap_servers, *topics, group_id=group)

    async def run_scheduler(self, stop: asyncio.Event, serve_ops: bool = False) -> None:
        """The scheduler (cron and start-up sync requests) and the stall watchdog."""
        from ragsync.producers.retention import History, RunRetention
        from ragsync.producers.scheduler import Scheduler
        from ragsync.streams.lag import GroupLag
        from ragsync.streams.watchdog import StallRules, Watchdog

        await self.ensure_topics()
        supervisor = self.supervisor("scheduler")
        # Never subscribes, so never joins the group: it reads the group's commits from outside.
        lag_reader = make_consumer(self.settings, self.bootstrap_servers, group_id=self.embedder_group)
        async with (
            self.publisher() as publisher,
            self.ledger(supervisor=supervisor) as ledger,
            _started(lag_reader),
        ):
            lag = GroupLag(lag_reader, self.embedder_group, self.topics.items)
            scheduler = Scheduler.from_settings(self.settings, publisher, self.topics)
            watchdog = Watchdog(StallRules.from_settings(self.settings), ledger, publisher, self.topics)
            history = History(self.settings.run_history_days, self.settings.run_history_per_service)
            retention = RunRetention(history, ledger, publisher, self.topics)
            collector = metrics.register_run_gauges(lambda: ledger.book)

            def status() -> dict[str, Any]:
                return {
                    "scheduler": scheduler.state.as_json(),
                    "watchdog_checks": watchdog.checks,
                    "embedder_group_lag": {"partitions": lag.last_lag, "last_error": lag.last_error},
                    **_runs_status(ledger),
                }

            stages: dict[str, Callable[[], Awaitable[object]]] = {
                "scheduler": lambda: scheduler.run(stop),
                "watchdog": lambda: watchdog.run(stop),
                "retention": lambda: retention.run(stop, self.settings.watchdog_interval),
                "lag": lambda: lag.run(stop, self.settings.lag_interval_s),
            }
            try:
                checks = {"broker": _ledger_check(ledger), "stages": supervisor.check}
                admin = {"sync": scheduler.requested_over_http}
                async with self.ops("scheduler", status, checks, serve_ops, admin):
                    await supervisor.run_stages(stages, stop)
            finally:
                REGISTRY.unregister(collector)


@contextlib.asynccontextmanager
async def _started(consumer: AIOKafkaConsumer) -> AsyncIterator[AIOKafkaConsumer]:
    """A consumer started for the block and stopped after it."""
    await start_client(consumer)
    try:
        yield consumer
    finally:
        await consumer.stop()


def _each(calls: list[Callable[[], None]]) -> Callable[[], None]:
    def call() -> None:
        for each in calls:
            each()

    return call


def _embedder_status(
    members: list[EmbeddingConsumer],
    space: StoreSpace | None,
    pruner: Pruner,
    completion: RunCompletion,
    related: RelatedConsumer | None,
    ledger: RunLedger,
) -> Callable[[], dict[str, Any]]:
    def status() -> dict[str, Any]:
        return {
            "held_runs": _held_runs(ledger),
            "consumers": [member.status() for member in members],
            "store_free_mb": round(space.free() / MB) if space else None,
            "last_index_error": pruner.last_index_error,
            "last_completion_error": completion.last_error,
            "related_edges": related.status() if related else None,
        }

    return status


def _embedder_checks(
    store: VectorStore,
    encoder: TextEncoder,
    members: list[EmbeddingConsumer],
    space: StoreSpace | None,
    supervisor: Supervisor,
    related: RelatedConsumer | None,
) -> dict[str, Check]:
    checks = {
        "qdrant": store_check(store),
        "model": _model_check(encoder),
        "batches": _members_check(members),
        "disk": _space_check(space),
        "stages": supervisor.check,
    }
    if related is not None:
        checks["related edges"] = _related_check(related)
    return checks


def _runs_status(ledger: RunLedger) -> dict[str, Any]:
    return {
        "active_runs": len(ledger.book.active()),
        "held_runs": _held_runs(ledger),
        "runs": [r.summary() for r in ledger.book.recent()],
    }


def _held_runs(ledger: RunLedger) -> list[dict[str, Any]]:
    """The runs whose deletions wait for a person (`ragsync prune RUN --confirm`)."""
    return [run.summary() for run in ledger.book.held()]


def _ledger_check(ledger: RunLedger) -> Check:
    async def check() -> str | None:
        lag = await ledger.lag()
        return "no answer from the broker yet" if lag is None else None

    return check


def _channel_check(client: CoordinatorClient) -> Check:
    async def check() -> str | None:
        state = client.connectivity()
        return None if state != grpc.ChannelConnectivity.TRANSIENT_FAILURE else f"{client.endpoint} unreachable"

    return check


def store_check(store: VectorStore) -> Check:
    """The readiness check of a store: what keeps it from answering, or None."""

    async def check() -> str | None:
        if store.busy:  # its calls wait meanwhile, so asking it would hang the check
            return f"{store.busy}; writes and searches wait until it ends"
        await asyncio.to_thread(store.count)
        return None

    return check


def _space_check(space: StoreSpace | None) -> Check:
    async def check() -> str | None:
        return None if space is None else space.shortage()

    return check


def _model_check(encoder: TextEncoder) -> Check:
    async def check() -> str | None:
        return None if encoder.loaded else "the model is still loading"

    return check


def _related_check(related: RelatedConsumer) -> Check:
    async def check() -> str | None:
        return f"related-content edges failing, retried: {related.last_error}" if related.last_error else None

    return check


def _members_check(members: list[Any]) -> Check:
    async def check() -> str | None:
        failing = [m.last_error for m in members if not m.ready]
        return f"batches failing, nothing committed: {failing[0]}" if failing else None

    return check
