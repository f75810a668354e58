"""The fetcher's faust app against the real broker: its consumer waits `kafka_fetch_max_wait_ms`, not faust's 1.5 s."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY

from ragsync.app import options
from ragsync.app.application import App
from ragsync.messaging.delivery import Position
from ragsync.operations.supervision import Restarts, StageCrashLoopError, Supervisor
from ragsync.settings import Settings
from ragsync.streams.fetcher import build_fetcher_app


class _Requests:
    """Stands in for the fetcher agent: it only collects the requests faust hands over."""

    def __init__(self, failures: int = 0) -> None:
        self.received: asyncio.Queue[bytes] = asyncio.Queue()
        self.failures = failures  # the first calls raise (fault injection)

    async def receive(self, key: bytes | None, value: bytes, at: Position) -> None:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("injected: the handler crashed")
        await self.received.put(value)


async def test_the_fetcher_consumer_waits_as_long_as_the_setting_says(settings: Settings) -> None:
    settings = settings.model_copy(update={"kafka_fetch_max_wait_ms": 123})
    app = App(settings)
    await app.ensure_topics()
    requests = _Requests()
    supervisor = Supervisor("fetcher", Restarts())
    stop = asyncio.Event()
    faust_app = build_fetcher_app(
        options.fetcher_group(settings),
        app.kafka,
        requests,  # type: ignore[arg-type]
        app.topics,
        supervisor,
        stop,
    )
    await faust_app.start()
    try:
        async with app.publisher() as publisher:
            await publisher.send_raw(app.topics.sync_requests, b"k", b"a request")
            await publisher.flush()
        assert await asyncio.wait_for(requests.received.get(), 60) == b"a request"
        # aiokafka keeps the wait on its fetcher; there is no public way to read it back.
        fetcher = faust_app.consumer._thread._consumer._fetcher
        assert fetcher._fetch_max_wait_ms == 123
    finally:
        await faust_app.stop()


async def test_a_request_whose_handler_crashes_is_handled_again_and_a_crash_loop_stops_the_fetcher(
    settings: Settings,
) -> None:
    app = App(settings)
    await app.ensure_topics()
    crashes = REGISTRY.get_sample_value("ragsync_stage_crashes_total", {"component": "fetcher", "stage": "fetch agent"})
    requests = _Requests(failures=2)
    supervisor = Supervisor("fetcher", Restarts(max_crashes=3, backoff_initial_s=0.05))
    stop = asyncio.Event()
    faust_app = build_fetcher_app(options.fetcher_group(settings), app.kafka, requests, app.topics, supervisor, stop)  # type: ignore[arg-type]
    await faust_app.start()
    try:
        async with app.publisher() as publisher:
            await publisher.send_raw(app.topics.sync_requests, b"k", b"first")
            await publisher.flush()
            assert await asyncio.wait_for(requests.received.get(), 60) == b"first"  # after two crashes, not skipped
            after = REGISTRY.get_sample_value(
                "ragsync_stage_crashes_total", {"component": "fetcher", "stage": "fetch agent"}
            )
            assert after == (crashes or 0) + 2 and await supervisor.check() is None
            requests.failures = 3  # the next request crashes its handler three times: a crash loop
            await publisher.send_raw(app.topics.sync_requests, b"k", b"second")
            await publisher.flush()
        with pytest.raises(StageCrashLoopError, match="fetch agent stage crashed 3 times"):
            await asyncio.wait_for(supervisor.until_stopped(stop), 60)
    finally:
        await faust_app.stop()
