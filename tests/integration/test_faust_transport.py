"""The fetcher's faust app against the real broker: its consumer waits `kafka_fetch_max_wait_ms`, not faust's 1.5 s."""

from __future__ import annotations

import asyncio

from ragsync.app import App
from ragsync.settings import Settings
from streams.fetcher import build_fetcher_app


class _Requests:
    """Stands in for the fetcher agent: it only collects the requests faust hands over."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[bytes] = asyncio.Queue()

    async def handle(self, key: bytes | None, value: bytes) -> None:
        await self.received.put(value)


async def test_the_fetcher_consumer_waits_as_long_as_the_setting_says(settings: Settings) -> None:
    settings = settings.model_copy(update={"kafka_fetch_max_wait_ms": 123})
    app = App(settings)
    await app.ensure_topics()
    requests = _Requests()
    faust_app = build_fetcher_app(settings, app.bootstrap_servers, requests, app.topics)  # type: ignore[arg-type]
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
