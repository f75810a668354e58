"""The app object: builds each stage from settings, with its collaborators passed in.

Every `run_*` coroutine is one long-running component and returns when `stop` is set; the CLI runs one of them
per process in a deployment, and `demo`/`sync` run them all in one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiokafka import AIOKafkaConsumer

from ragsync.coordinator import CoordinatorClient, Signer
from ragsync.errors import SetupError
from ragsync.kafka import Publisher, make_consumer
from ragsync.settings import Settings
from ragsync.store import VectorStore
from ragsync.topics import Topics, ensure_topics
from ragsync.watch import RunWatcher
from streams.model import TextEncoder

log = logging.getLogger(__name__)


class App:
    """ragsync's stages, wired from one `Settings` against one broker."""

    def __init__(self, settings: Settings, bootstrap_servers: str | None = None) -> None:
        self.settings = settings
        self.bootstrap_servers = bootstrap_servers or settings.bootstrap_servers
        self.topics = Topics.from_settings(settings)

    async def ensure_topics(self) -> Topics:
        """Create the topics that are missing."""
        return await ensure_topics(self.settings, self.bootstrap_servers)

    def signer(self) -> Signer | None:
        """The call signer from RAG_PRIVATE_KEY; a malformed key raises `SigningKeyError` here, at start-up."""
        key = self.settings.rag_private_key
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
        )

    def encoder(self) -> TextEncoder:
        """The embedding model (loads on first use)."""
        return TextEncoder(
            self.settings.embedding_model, self.settings.embedding_batch_size, self.settings.torch_threads
        )

    @contextlib.asynccontextmanager
    async def publisher(self) -> AsyncIterator[Publisher]:
        """A started publisher, flushed and stopped on exit."""
        publisher = Publisher.from_settings(self.settings, self.bootstrap_servers)
        await publisher.start()
        try:
            yield publisher
        finally:
            await publisher.stop()

    async def run_fetcher(self, stop: asyncio.Event, coordinator_endpoint: str | None = None) -> None:
        """The fetcher agent: sync requests in, item events out."""
        from streams.fetcher import SyncRunner, build_fetcher_app

        if not self.settings.coordinator_enabled:
            raise SetupError("COORDINATOR_ENABLED=false: the fetcher has nothing to fetch from; set it to true")
        client = self.coordinator_client(coordinator_endpoint)  # a bad RAG_PRIVATE_KEY fails here, first
        await self.ensure_topics()
        async with self.publisher() as publisher, client:
            runner = SyncRunner(self.settings, client, publisher, self.topics)
            faust_app = build_fetcher_app(self.settings, self.bootstrap_servers, runner, publisher, self.topics)
            await faust_app.start()
            log.info("fetcher agent consuming %s", self.topics.sync_requests)
            try:
                await stop.wait()
            finally:
                await faust_app.stop()

    async def run_embedders(
        self,
        stop: asyncio.Event,
        count: int = 1,
        store: VectorStore | None = None,
        encoder: TextEncoder | None = None,
    ) -> None:
        """`count` members of the embedding consumer group, sharing one model and one store."""
        from streams.embedder import Embedder, EmbeddingConsumer

        await self.ensure_topics()
        own_store = store is None
        store = store or VectorStore.open(self.settings)
        encoder = encoder or self.encoder()
        try:
            async with self.publisher() as publisher:
                embedder = Embedder(encoder, store, publisher, self.topics)
                await embedder.prepare()
                consumers = [self._items_consumer() for _ in range(count)]
                members = [
                    EmbeddingConsumer(
                        c, embedder, self.settings.embedder_max_batch, self.settings.embedder_poll_timeout_ms
                    )
                    for c in consumers
                ]
                await asyncio.gather(*(c.start() for c in consumers))
                log.info("%d embedder consumer(s) in group %s", count, self.embedder_group)
                try:
                    await asyncio.gather(*(m.run(stop) for m in members))
                finally:
                    await asyncio.gather(*(c.stop() for c in consumers), return_exceptions=True)
        finally:
            if own_store:
                store.close()

    @property
    def embedder_group(self) -> str:
        """The embedding consumer group's id."""
        return f"{self.settings.kafka_topic_prefix}embedder"

    def _items_consumer(self) -> AIOKafkaConsumer:
        return make_consumer(self.settings, self.bootstrap_servers, self.topics.items, group_id=self.embedder_group)

    async def run_scheduler(self, stop: asyncio.Event) -> None:
        """The scheduler: cron and start-up sync requests."""
        from producers.scheduler import Scheduler

        await self.ensure_topics()
        async with self.publisher() as publisher:
            await Scheduler(self.settings, publisher, self.topics).run(stop)

    async def run_watcher(self) -> RunWatcher:
        """A started watcher over the sync-runs topic (stop it when done)."""
        consumer = make_consumer(self.settings, self.bootstrap_servers, group_id=None)
        watcher = RunWatcher(consumer, self.topics.sync_runs)
        await watcher.start()
        return watcher
