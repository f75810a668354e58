"""The embedder component wired: the members of the embedding consumer group around one model and one store,
with the completion check, the pruner, a model migration when one is due, the related-content stage when it is
on, and their checks and status."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer

from ragsync.app import options
from ragsync.app.health import held_runs, space_check, store_check
from ragsync.app.wiring import Wiring
from ragsync.items import ItemRules
from ragsync.messaging.kafka import Committed, assign_every_partition, start_client
from ragsync.model.encoder import TextEncoder
from ragsync.model.encoder_process import ProcessEncoder
from ragsync.model.placement import AutoEncoder
from ragsync.operations import metrics
from ragsync.operations.endpoints import Check
from ragsync.operations.supervision import Supervisor
from ragsync.runstate.channel import RunChannel
from ragsync.runstate.deletions import DeletionBudget, DeletionGuard, PruneConfirmations
from ragsync.store import VectorStore, open_store
from ragsync.store.space import MB

if TYPE_CHECKING:
    from ragsync.streams.completion import RunCompletion
    from ragsync.streams.embedder import Embedder, EmbeddingConsumer
    from ragsync.streams.migration import ModelMigration
    from ragsync.streams.related import RelatedConsumer

log = logging.getLogger(__name__)
SPACE_RECHECK_S = 2.0  # how often a disk too full to open the store on is looked at again
Stages = dict[str, Callable[[], Awaitable[object]]]


async def run_embedders(
    app: Wiring,
    stop: asyncio.Event,
    *,
    count: int,
    store: VectorStore | None,
    encoder: TextEncoder | None,
    serve_ops: bool,
    load_model: bool,
) -> None:
    """`count` members of the embedding consumer group, sharing one model and one store, until `stop` is set. The
    model loads at start (`load_model`: a deployment is ready once it has), or else when a batch first needs it."""
    rules = app.item_rules()  # a bad schema fails here, before anything connects
    await app.ensure_topics()
    own_store = store is None
    if own_store and not await _space_to_open(app, stop, serve_ops):
        return
    store = store or open_store(options.store(app.settings))
    own_encoder = encoder is None
    encoder = encoder or app.encoder()
    try:
        if load_model:
            await encoder.load_async()
        await _embed(app, stop, count, EmbedderParts(store=store, encoder=encoder, rules=rules), serve_ops)
    finally:
        if own_encoder:
            encoder.close()
        if own_store:
            store.close()


@dataclass(frozen=True, kw_only=True)
class EmbedderParts:
    """What every stage of the embedder component shares: the store, the model and the item rules."""

    store: VectorStore
    encoder: TextEncoder
    rules: ItemRules


async def _embed(app: Wiring, stop: asyncio.Event, count: int, parts: EmbedderParts, serve_ops: bool) -> None:
    supervisor = app.supervisor("embedder")
    # Nothing here waits on the ledger's promptness, and this process's cores belong to the encoder.
    async with app.run_channel(prompt=False, supervisor=supervisor) as channel:
        component = EmbedderComponent(app, channel, parts)
        stages = await component.start(count, stop)
        admin = {"prune": PruneConfirmations(channel).over_http}
        app.related = component.related
        try:
            async with app.ops("embedder", component.status, component.checks(supervisor), serve_ops, admin):
                await supervisor.run_stages(stages, stop)
        finally:
            app.related = None
            await component.stop()


class EmbedderComponent:
    """The stages of one embedder process over its run channel, and what /status and /readyz say of them."""

    def __init__(self, app: Wiring, channel: RunChannel, parts: EmbedderParts) -> None:
        self._app, self._channel, self._parts = app, channel, parts
        self.space = app.store_space()
        self.members: list[EmbeddingConsumer] = []
        self.related: RelatedConsumer | None = None
        self.migration: ModelMigration | None = None  # while the model changes
        self._clients: list[AIOKafkaConsumer] = []

    async def start(self, count: int, stop: asyncio.Event) -> Stages:
        """Build and start every stage; what the supervisor runs."""
        from ragsync.streams.completion import RunCompletion
        from ragsync.streams.embedder import Embedder
        from ragsync.streams.pruner import Pruner

        app, channel, store = self._app, self._channel, self._parts.store
        embedder = Embedder(self._parts.encoder, store, channel, self._parts.rules)
        await embedder.prepare()
        budget = options.deletion_budget(app.settings)
        guard = DeletionGuard(store, budget)
        self.pruner = Pruner(store, channel, guard)
        for service in app.settings.batch_sync_services:  # a counter alerts see rise from 0, not appear at 1
            metrics.DELETIONS_HELD.labels(service)
        consumers = [app.items_consumer(app.embedder_group) for _ in range(count)]
        share = app.settings.run_max_dead_letter_share
        self.completion: RunCompletion = RunCompletion(channel, consumers[0].committed, guard, share)
        stages: Stages = {"pruner": lambda: self.pruner.run(stop), "completion": lambda: self.completion.run(stop)}
        if embedder.migrating:
            stages["migration"] = self._migration(stop, budget)
        if app.settings.related_edges:
            self.related = self._related_stage(consumers[0].committed)
        self._clients = consumers + ([self.related.consumer] if self.related else [])
        await asyncio.gather(*(start_client(c) for c in self._clients))
        await self._add_members(consumers, embedder, stages, stop)
        log.info("%d embedder consumer(s) in group %s", count, app.embedder_group)
        return stages

    def _migration(self, stop: asyncio.Event, budget: DeletionBudget) -> Callable[[], Awaitable[object]]:
        from ragsync.streams.migration import ModelMigration

        defaults = options.request_defaults(self._app.settings)
        migration = self.migration = ModelMigration(defaults, self._parts.store, self._channel, budget)
        return lambda: migration.run(stop)

    async def _add_members(
        self, consumers: list[AIOKafkaConsumer], embedder: Embedder, stages: Stages, stop: asyncio.Event
    ) -> None:
        from ragsync.streams.embedder import EmbeddingConsumer

        app = self._app
        if app.exclusive:
            await assign_every_partition(consumers, app.topics.items)
        woken = [self.completion.wake] + ([self.related.wake] if self.related else [])
        batches = options.batches(app.settings)
        self.members += [
            EmbeddingConsumer(
                c, embedder, batches, on_commit=_each(woken), space=self.space, in_group=not app.exclusive
            )
            for c in consumers
        ]
        for n, member in enumerate(self.members, 1):
            stages[f"consumer {n}"] = lambda m=member: m.run(stop)  # type: ignore[misc]
        related = self.related
        if related is not None:
            if app.exclusive:
                await assign_every_partition([related.consumer], app.topics.items)
            stages["related edges"] = lambda: related.run(stop)

    def _related_stage(self, stored_up_to: Committed) -> RelatedConsumer:
        """The related-content stage: its own consumer group on the items, behind the embedder group's commits,
        yielding to this process's embedders while they have items."""
        from ragsync.streams.related import RelatedConsumer, RelatedEdges

        app = self._app
        rules = options.related_rules(app.settings)
        edges = RelatedEdges(self._parts.store, rules)
        log.info(
            "related-content edges on: top %d at %.2f or more, group %s",
            rules.top_k,
            rules.min_score,
            app.related_group,
        )
        consumer = app.items_consumer(app.related_group)
        batches = options.related_batches(app.settings)
        return RelatedConsumer(consumer, edges, stored_up_to, batches, embedders_busy=self._busy)

    def _busy(self) -> bool:
        return any(member.busy for member in self.members)

    async def stop(self) -> None:
        """Stop every consumer this component started."""
        await asyncio.gather(*(c.stop() for c in self._clients), return_exceptions=True)

    def status(self) -> dict[str, Any]:
        """The component on /status."""
        return {
            "held_runs": held_runs(self._channel.ledger),
            "consumers": [member.status() for member in self.members],
            "store_free_mb": round(self.space.free() / MB) if self.space else None,
            "last_index_error": self.pruner.last_index_error,
            "last_completion_error": self.completion.last_error,
            "related_edges": self.related.status() if self.related else None,
            "model": _placement(self._parts.encoder),
            "model_change": _model_change(self.migration),
        }

    def checks(self, supervisor: Supervisor) -> dict[str, Check]:
        """The component's readiness checks."""
        checks = {
            "qdrant": store_check(self._parts.store),
            "model": _model_check(self._parts.encoder),
            "batches": _members_check(self.members),
            "disk": space_check(self.space),
            "stages": supervisor.check,
        }
        if self.related is not None:
            checks["related edges"] = _related_check(self.related)
        return checks


def _model_change(migration: ModelMigration | None) -> dict[str, object] | None:
    """A model change under way: whether its switch is done, or held and why."""
    if migration is None:
        return None
    return {"done": migration.done, "held": migration.held.reason if migration.held else None}


def _placement(encoder: TextEncoder) -> dict[str, object]:
    """Where the model runs (EMBEDDING_PROCESS), and with `auto` the figures that decided it."""
    if isinstance(encoder, AutoEncoder):  # `encoding_in_child`: chosen is not yet moved (its load, or a failed one)
        return {"embedding_process": "auto", **encoder.placement.status(), "encoding_in_child": encoder.moved}
    where = "its own process" if isinstance(encoder, ProcessEncoder) else "this process"
    return {"embedding_process": "on" if where == "its own process" else "off", "where": where}


async def _space_to_open(app: Wiring, stop: asyncio.Event, serve_ops: bool) -> bool:
    """Wait, before the embedded store opens, until its disk has STORE_MIN_FREE_MB free: it maps its files, and
    opening it on a full disk kills the process with SIGBUS, without a word. Meanwhile /readyz answers 503 with
    `disk`. False when `stop` was set first."""
    space = app.store_space()
    shortage = space.shortage() if space is not None else None
    if space is None or shortage is None:
        return True
    log.error("%s; the store is not opened until then", shortage)
    metrics.STORE_SPACE_PAUSES.inc()
    status = {"waiting_for_disk": shortage}
    async with app.ops("embedder", lambda: status, {"disk": space_check(space)}, serve_ops):
        while (shortage := space.shortage()) is not None and not stop.is_set():
            status["waiting_for_disk"] = shortage
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SPACE_RECHECK_S)
    if not stop.is_set():
        log.warning("the store's disk has room again: opening the store")
    return not stop.is_set()


def _each(calls: list[Callable[[], None]]) -> Callable[[], None]:
    def call() -> None:
        for each in calls:
            each()

    return call


def _model_check(encoder: TextEncoder) -> Check:
    async def check() -> str | None:
        return None if encoder.loaded else "the model is still loading"

    return check


def _related_check(related: RelatedConsumer) -> Check:
    async def check() -> str | None:
        return f"related-content edges failing, retried: {related.last_error}" if related.last_error else None

    return check


def _members_check(members: list[EmbeddingConsumer]) -> Check:
    async def check() -> str | None:
        failing = [m.last_error for m in members if not m.ready]
        return f"batches failing, nothing committed: {failing[0]}" if failing else None

    return check
