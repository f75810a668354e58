"""What every component is built with, against one broker: the Kafka options and topics, a publisher, the run
ledger and channel, the Coordinator client, the model, the item rules, the supervisor and the ops server.

The components (`fetching`, `embedding`, `scheduling`) take a `Wiring`; `App` adds the coroutines that start them.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer

from ragsync.app import options
from ragsync.coordinator import CoordinatorClient, Signer
from ragsync.items import ItemRules
from ragsync.messaging.kafka import Publisher, make_consumer
from ragsync.messaging.topics import Topics, ensure_topics
from ragsync.model.encoder import TextEncoder
from ragsync.model.encoder_process import ProcessEncoder
from ragsync.model.placement import AutoEncoder
from ragsync.operations import metrics
from ragsync.operations.endpoints import Action, Check, OpsServer
from ragsync.operations.supervision import Supervisor
from ragsync.runstate.channel import RunChannel
from ragsync.runstate.deletions import DeletionBudget
from ragsync.runstate.ledger import RunLedger
from ragsync.schemas import Schemas
from ragsync.settings import Settings, reveal
from ragsync.store.space import MB, StoreSpace

if TYPE_CHECKING:
    from ragsync.streams.related import RelatedConsumer

PROMPT_FETCH_MAX_WAIT_MS = 50  # the fetch wait of a ledger that `caught_up` and `wait` are called on


class Wiring:
    """The collaborators of ragsync's components, built from one `Settings` against one broker."""

    def __init__(self, settings: Settings, bootstrap_servers: str | None = None, exclusive: bool = False) -> None:
        """`exclusive`: this process is the broker's only client (a local broker started for one command), so
        its consumers take every partition directly: no group to join, which costs seconds per group."""
        self.settings = settings
        metrics.label_services(settings.batch_sync_services)  # every other service's series is `other`
        self.kafka = options.kafka(settings, bootstrap_servers)
        self.bootstrap_servers = self.kafka.bootstrap_servers
        self.topics = options.topics(settings)
        self.exclusive = exclusive
        self.related: RelatedConsumer | None = None  # the related-content stage while the embedders run (if on)

    async def ensure_topics(self) -> Topics:
        """Create the topics that are missing."""
        return await ensure_topics(self.kafka, self.topics)

    def signer(self) -> Signer | None:
        """The call signer from RAG_PRIVATE_KEY; a malformed key raises `SigningKeyError` here, at start-up."""
        key = reveal(self.settings.rag_private_key)
        return Signer.from_env_value(key) if key else None

    def coordinator_client(self, endpoint: str | None = None) -> CoordinatorClient:
        """A client for COORDINATOR_GRPC_ENDPOINT (or `endpoint`)."""
        return CoordinatorClient(options.coordinator(self.settings, endpoint), self.signer())

    def supervisor(self, component: str) -> Supervisor:
        """Restarts the component's crashed stages (STAGE_MAX_CRASHES within STAGE_CRASH_WINDOW_S stop it)."""
        return Supervisor(component, options.restarts(self.settings))

    def encoder(self) -> TextEncoder:
        """The embedding model (loads on first use): in a process of its own with EMBEDDING_PROCESS=on, moving
        to one if its first texts show it fast relative to the rest with `auto` (see `ragsync.model.placement`)."""
        kinds = {"on": ProcessEncoder, "off": TextEncoder, "auto": AutoEncoder}
        return kinds[self.settings.embedding_process](options.model(self.settings))

    def item_rules(self) -> ItemRules:
        """How records become items: the schemas in SCHEMAS_DIR and the built-in ones (validated here)."""
        return ItemRules(Schemas.load(self.settings.schemas_dir))

    def deletion_budget(self) -> DeletionBudget:
        """What a run may delete without a person: RUN_MAX_DELETE_SHARE and RUN_MIN_DELETE_HOLD."""
        return options.deletion_budget(self.settings)

    def store_space(self) -> StoreSpace | None:
        """The watch on the embedded store's disk (None for a Qdrant server, or with STORE_MIN_FREE_MB=0)."""
        store = options.store(self.settings)
        if store.url or not store.min_free_mb:
            return None
        return StoreSpace(store.path, int(store.min_free_mb * MB))

    @property
    def embedder_group(self) -> str:
        """The embedding consumer group's id."""
        return options.group(self.settings, "embedder")

    @property
    def related_group(self) -> str:
        """The related-content stage's consumer group's id."""
        return options.group(self.settings, "related")

    def items_consumer(self, group: str) -> AIOKafkaConsumer:
        """A consumer of the items topic in `group`; an exclusive process assigns its partitions itself. In the
        group either way: the run completion reads the embedder group's committed offsets, and each stage commits
        its own."""
        topics = () if self.exclusive else (self.topics.items,)
        return make_consumer(self.kafka, *topics, group_id=group)

    @contextlib.asynccontextmanager
    async def publisher(self) -> AsyncIterator[Publisher]:
        """A started publisher, flushed and stopped on exit."""
        publisher = Publisher.to(self.kafka)
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
        consumer = make_consumer(self.kafka, group_id=None, fetch_max_wait_ms=wait, fetch_max_mb=1)
        ledger = RunLedger(consumer, self.topics.sync_runs, from_beginning)
        await ledger.start(supervisor)
        try:
            yield ledger
        finally:
            await ledger.stop()

    @contextlib.asynccontextmanager
    async def run_channel(self, prompt: bool = True, supervisor: Supervisor | None = None) -> AsyncIterator[RunChannel]:
        """The runs from the beginning of the run-state topic and a started publisher to change them, for the
        block (see `ledger` for `prompt` and `supervisor`)."""
        async with self.publisher() as publisher, self.ledger(prompt=prompt, supervisor=supervisor) as ledger:
            yield RunChannel(ledger=ledger, publisher=publisher, topics=self.topics)

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
        server = OpsServer(component, options.ops(self.settings, component), status, checks, admin)
        await server.start()
        try:
            yield server
        finally:
            await server.stop()
