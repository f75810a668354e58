"""The app object: starts each component (wired in `fetching`, `embedding` and `scheduling`) with the
collaborators of `Wiring`.

Every `run_*` coroutine is one long-running component and returns when `stop` is set; the CLI runs one of them
per process in a deployment (with its ops endpoints), and `demo`/`sync` run them all in one process.
"""

from __future__ import annotations

import asyncio

from ragsync.app import embedding, fetching, scheduling
from ragsync.app.wiring import Wiring
from ragsync.model.encoder import TextEncoder
from ragsync.store import VectorStore


class App(Wiring):
    """ragsync's components, wired from one `Settings` against one broker, each started by its `run_*`."""

    async def run_fetcher(
        self, stop: asyncio.Event, coordinator_endpoint: str | None = None, serve_ops: bool = False
    ) -> None:
        """The fetcher agent: sync requests in, item events out."""
        await fetching.run_fetcher(self, stop, coordinator_endpoint, serve_ops)

    async def run_embedders(
        self,
        stop: asyncio.Event,
        count: int = 1,
        store: VectorStore | None = None,
        encoder: TextEncoder | None = None,
        serve_ops: bool = False,
        load_model: bool = True,
    ) -> None:
        """`count` members of the embedding consumer group, sharing one model and one store (opened here unless
        given). The model loads at start (`load_model`: a deployment is ready once it has), or else when a batch
        first needs it."""
        await embedding.run_embedders(
            self, stop, count=count, store=store, encoder=encoder, serve_ops=serve_ops, load_model=load_model
        )

    async def run_scheduler(self, stop: asyncio.Event, serve_ops: bool = False) -> None:
        """The scheduler (cron and start-up sync requests) and the stall watchdog."""
        await scheduling.run_scheduler(self, stop, serve_ops)
