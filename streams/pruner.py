"""After a full run fetched every page and every item settled, delete the points it did not see.

Every point a run writes or finds unchanged carries the run's id as its generation, so the points it did not see
are those of its tenant and service with another generation, last touched before it started: the store deletes
them by filter, page by page, and nothing holds the run's ids. Never after a partial or failed run: only a
succeeded batch or daily run knows the whole upstream set.
"""

from __future__ import annotations

import asyncio
import logging

from ragsync import metrics
from ragsync.events import RunPruned
from ragsync.kafka import Publisher
from ragsync.ledger import RunLedger
from ragsync.runs import RunState
from ragsync.store import StoreError, VectorStore
from ragsync.supervision import unless_stopped

log = logging.getLogger(__name__)


class Pruner:
    """Watches the ledger for succeeded full runs not pruned yet, and prunes each once."""

    def __init__(self, store: VectorStore, ledger: RunLedger, publisher: Publisher) -> None:
        self._store = store
        self._ledger = ledger
        self._publisher = publisher
        self._queue: asyncio.Queue[RunState] = asyncio.Queue()
        self._queued: set[str] = set()
        self.last_index_error: str | None = None
        ledger.listeners.append(self._notice)

    def _notice(self, run: RunState) -> None:
        if run.status == "succeeded" and run.full and run.pruned is None and run.run_id not in self._queued:
            self._queued.add(run.run_id)
            self._queue.put_nowait(run)

    async def run(self, stop: asyncio.Event) -> None:
        """Prune queued runs until `stop` is set."""
        while not stop.is_set():
            run = await unless_stopped(self._queue.get(), stop)
            if run is None:
                continue
            if run.pruned is None:  # another replica may have pruned it meanwhile
                await self.prune(run)
            self._queued.discard(run.run_id)  # its pruned record is in the book now: not noticed again

    async def prune(self, run: RunState) -> int:
        """Delete the run's tenant and service points it did not see; report the count on the run."""
        assert run.started_at is not None
        started = run.started_at.timestamp()
        removed = await asyncio.to_thread(self._store.sweep, run.tenant_id, run.service, run.run_id, started)
        await self._build_index(run)
        if removed:
            log.warning("run %s (%s): deleted %d points of items gone upstream", run.run_id, run.service, removed)
        metrics.ITEMS.labels(metrics.stage_label("pruned"), metrics.service_label(run.service)).inc(removed)
        record = RunPruned(run_id=run.run_id, tenant_id=run.tenant_id, service=run.service, pruned=removed)
        await self._ledger.publish(self._publisher, record)
        return removed

    async def _build_index(self, run: RunState) -> None:
        """A full run is the bulk load: build the search index now rather than on the first query. A failure
        leaves searches exact (slower, still right) until the next full run tries again; it stops nothing."""
        try:
            built = await asyncio.to_thread(self._store.optimize)
        except StoreError as error:
            self.last_index_error = f"after run {run.run_id} ({run.service}): {error}"
            metrics.INDEX_BUILDS.labels("failed").inc()
            log.error("building the search index failed; searches stay exact until the next full run: %s", error)
        else:
            self.last_index_error = None
            metrics.INDEX_BUILDS.labels("built" if built else "skipped").inc()
