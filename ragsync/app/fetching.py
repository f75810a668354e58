"""The fetcher component wired: the fetcher agent over the sync requests, its Coordinator client, and its checks
(the broker, the Coordinator's channel, its stages)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import grpc

from ragsync.app import options
from ragsync.app.health import ledger_check, runs_status
from ragsync.app.wiring import Wiring
from ragsync.coordinator import CoordinatorClient
from ragsync.errors import SetupError
from ragsync.messaging.kafka import assign_every_partition, make_consumer, start_client
from ragsync.operations.endpoints import Check
from ragsync.operations.supervision import Supervisor

if TYPE_CHECKING:
    from ragsync.streams.fetcher import FetcherAgent

log = logging.getLogger(__name__)


async def run_fetcher(app: Wiring, stop: asyncio.Event, coordinator_endpoint: str | None, serve_ops: bool) -> None:
    """The fetcher agent: sync requests in, item events out, until `stop` is set."""
    from ragsync.streams.fetcher import FetcherAgent, SyncRunner

    if not app.settings.coordinator_enabled:
        raise SetupError("COORDINATOR_ENABLED=false: the fetcher has nothing to fetch from; set it to true")
    rules = app.item_rules()  # a bad schema or RAG_PRIVATE_KEY fails here, before anything connects
    client = app.coordinator_client(coordinator_endpoint)
    await app.ensure_topics()
    supervisor = app.supervisor("fetcher")
    limits = options.fetch_limits(app.settings)
    stall = options.stall_rules(app.settings)
    async with app.run_channel(supervisor=supervisor) as channel, client:
        runner = SyncRunner(limits, client, channel, rules)
        agent = FetcherAgent(
            runner, channel, default_tenant=limits.default_tenant, stall_timeout_s=stall.stall_timeout_s
        )
        checks = {
            "broker": ledger_check(channel.ledger),
            "coordinator": channel_check(client),
            "stages": supervisor.check,
        }
        async with _requests_to(app, agent, supervisor, stop):
            log.info("fetcher agent consuming %s, Coordinator at %s", app.topics.sync_requests, client.endpoint)
            async with app.ops("fetcher", lambda: runs_status(channel.ledger), checks, serve_ops):
                await supervisor.until_stopped(stop)


@contextlib.asynccontextmanager
async def _requests_to(
    app: Wiring, agent: FetcherAgent, supervisor: Supervisor, stop: asyncio.Event
) -> AsyncIterator[None]:
    """Sync requests reach `agent` while the block runs: through the fetcher group's faust agent, or, in an
    exclusive process, from every partition directly."""
    from ragsync.streams.fetcher import build_fetcher_app

    if app.exclusive:
        async with _read_directly(app, agent, supervisor, stop):
            yield
        return
    group = options.fetcher_group(app.settings)
    faust_app = build_fetcher_app(group, app.kafka, agent, app.topics, supervisor, stop)
    await faust_app.start()
    try:
        yield
    finally:
        await faust_app.stop()


@contextlib.asynccontextmanager
async def _read_directly(
    app: Wiring, agent: FetcherAgent, supervisor: Supervisor, stop: asyncio.Event
) -> AsyncIterator[None]:
    """Every partition of the sync requests read by this process, which owns its broker: no group to join."""
    from ragsync.streams.fetcher import read_requests

    consumer = make_consumer(app.kafka, group_id=None)
    await start_client(consumer)
    try:
        await assign_every_partition([consumer], app.topics.sync_requests)
        concurrency = options.fetcher_group(app.settings).concurrency
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


def channel_check(client: CoordinatorClient) -> Check:
    """Ready unless the Coordinator's channel is failing to connect."""

    async def check() -> str | None:
        state = client.connectivity()
        return None if state != grpc.ChannelConnectivity.TRANSIENT_FAILURE else f"{client.endpoint} unreachable"

    return check
