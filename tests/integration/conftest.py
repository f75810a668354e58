"""Running stages in the test's event loop, against the session's broker."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiokafka import AIOKafkaConsumer

from ragsync.app import App
from ragsync.store import VectorStore
from streams.model import TextEncoder


@contextlib.asynccontextmanager
async def fetcher_running(app: App, coordinator_endpoint: str) -> AsyncIterator[asyncio.Task[None]]:
    """The fetcher agent until the block ends; a crash fails the test at the end of the block."""
    stop = asyncio.Event()
    task = asyncio.create_task(app.run_fetcher(stop, coordinator_endpoint))
    try:
        yield task
    finally:
        stop.set()
        await task


@contextlib.asynccontextmanager
async def embedders_running(
    app: App, store: VectorStore, encoder: TextEncoder, count: int = 1
) -> AsyncIterator[asyncio.Task[None]]:
    """`count` embedding consumers until the block ends."""
    stop = asyncio.Event()
    task = asyncio.create_task(app.run_embedders(stop, count, store, encoder))
    try:
        yield task
    finally:
        stop.set()
        await task


async def read_all(bootstrap: str, topic: str, expected: int, timeout: float = 30.0) -> list[bytes]:
    """Every message value of `topic`, waiting until at least `expected` arrived."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    values: list[bytes] = []
    try:
        async with asyncio.timeout(timeout):
            while len(values) < expected:
                batch = await consumer.getmany(timeout_ms=200)
                values += [m.value for records in batch.values() for m in records]
    finally:
        await consumer.stop()
    return values
