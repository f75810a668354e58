"""The scheduler component wired: the scheduler (cron and start-up sync requests), the stall watchdog, run history
retention and the embedder group's lag, with their checks and status."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer
from prometheus_client import REGISTRY

from ragsync.app import options
from ragsync.app.health import ledger_check, runs_status
from ragsync.app.wiring import Wiring
from ragsync.messaging.kafka import make_consumer, start_client
from ragsync.runstate.run_gauges import register_run_gauges


async def run_scheduler(app: Wiring, stop: asyncio.Event, serve_ops: bool) -> None:
    """The scheduler and the stall watchdog, until `stop` is set."""
    from ragsync.producers.retention import RunRetention
    from ragsync.producers.scheduler import Scheduler
    from ragsync.streams.lag import GroupLag
    from ragsync.streams.watchdog import Watchdog

    await app.ensure_topics()
    supervisor = app.supervisor("scheduler")
    # Never subscribes, so never joins the group: it reads the group's commits from outside.
    lag_reader = make_consumer(app.kafka, group_id=app.embedder_group)
    settings = app.settings
    async with app.run_channel(supervisor=supervisor) as channel, _started(lag_reader):
        lag = GroupLag(lag_reader, app.embedder_group, app.topics.items)
        scheduler = Scheduler(options.schedule_plan(settings), options.request_defaults(settings), channel)
        stall = options.stall_rules(settings)
        watchdog = Watchdog(stall, channel)
        retention = RunRetention(options.history(settings), channel)
        collector = register_run_gauges(lambda: channel.book)

        def status() -> dict[str, Any]:
            return {
                "scheduler": scheduler.state.as_json(),
                "watchdog_checks": watchdog.checks,
                "embedder_group_lag": {"partitions": lag.last_lag, "last_error": lag.last_error},
                **runs_status(channel.ledger),
            }

        stages: dict[str, Callable[[], Awaitable[object]]] = {
            **scheduler.stages(stop),
            "watchdog": lambda: watchdog.run(stop),
            "retention": lambda: retention.run(stop, stall.interval_s),
            "lag": lambda: lag.run(stop, settings.lag_interval_s),
        }
        try:
            checks = {"broker": ledger_check(channel.ledger), "stages": supervisor.check}
            admin = {"sync": scheduler.requested_over_http}
            async with app.ops("scheduler", status, checks, serve_ops, admin):
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
