"""The pruner: carries out a run's deletions once they are allowed, after it succeeded or after a person confirmed
its hold.

A run's deletions are the points of the records it found flagged deleted (the embedder marks them with the run's
id instead of deleting them) and, after a full run, the points it did not see: those of its tenant and service
with another generation, last touched before it started. The store deletes both by filter, page by page, and
nothing holds the run's ids. The completion stage counted and judged them against the deletion budget first
(`ragsync.runstate.deletions`): a held run deletes nothing until a person confirms it.
"""

from __future__ import annotations

import asyncio
import logging

from ragsync.events import Cursor, Deletion, RunPruned
from ragsync.operations import metrics
from ragsync.operations.logs import about_run
from ragsync.operations.supervision import unless_stopped
from ragsync.runstate.channel import RunChannel
from ragsync.runstate.deletions import DeletionGuard, by_tenant, refusal, scope_of, total
from ragsync.runstate.runs import RunState
from ragsync.store import IndexBuildError, StoreError, VectorStore

log = logging.getLogger(__name__)


class Pruner:
    """Watches the ledger for runs whose deletions are pending, and carries out each once."""

    def __init__(self, store: VectorStore, channel: RunChannel, guard: DeletionGuard) -> None:
        self._store = store
        self._channel = channel
        self._guard = guard
        self._queue: asyncio.Queue[RunState] = asyncio.Queue()
        self._queued: set[str] = set()
        self.last_index_error: str | None = None
        channel.ledger.listeners.append(self._notice)

    def _notice(self, run: RunState) -> None:
        if run.deletion_pending and run.run_id not in self._queued:
            self._queued.add(run.run_id)
            self._queue.put_nowait(run)

    async def run(self, stop: asyncio.Event) -> None:
        """Prune queued runs until `stop` is set. Started again after a crash, it queues afresh every kept run
        whose deletions are still pending: the one it failed on included, which no new record may ever name."""
        self._queue, self._queued = asyncio.Queue(), set()
        for kept in self._channel.book.runs.values():
            self._notice(kept)
        while not stop.is_set():
            run = await unless_stopped(self._queue.get(), stop)
            if run is None:
                continue
            try:
                if run.deletion_pending:  # another replica may have pruned it meanwhile
                    with about_run(run.run_id, run.tenant_id, run.service):
                        await self.prune(run)
            finally:
                self._queued.discard(run.run_id)  # pruned: its record is in the book now, not noticed again

    async def prune(self, run: RunState) -> Deletion | None:
        """Delete what the run's deletions remove; report the counts on the run. None, with nothing deleted, for a
        confirmation that came too late (a newer full run decided afresh) or that no held deletion matches."""
        confirmed = run.confirm is not None
        refused = refusal(run) if confirmed else (await self._guard.check(run))[1]
        if refused is not None:
            # A confirmation that came too late, or a succeeded run whose deletions are over the budget all the
            # same: the completion check judged them, so only a record it did not write gets here.
            log.error("the deletions of run %s are not carried out: %s", run.run_id, refused)
            metrics.DELETIONS_REFUSED.inc()
            return None
        per_tenant = await asyncio.to_thread(self._store.remove, scope_of(run))
        removed = total(per_tenant)
        if removed.total:
            how = "confirmed by a person" if confirmed else "within the deletion budget"
            log.warning(
                "run %s (%s/%s), %s: deleted %d points of items gone upstream and %d of records flagged deleted",
                run.run_id,
                run.service,
                run.tenant_id,
                how,
                removed.swept,
                removed.deleted,
            )
        metrics.ITEMS.labels(metrics.stage_label("swept"), metrics.service_label(run.service)).inc(removed.swept)
        record = RunPruned(
            run_id=run.run_id,
            tenant_id=run.tenant_id,
            service=run.service,
            pruned=removed.swept,
            deleted=removed.deleted,
            tenants=by_tenant(run, per_tenant),
        )
        await self._channel.report(record, *self._cursor(run, confirmed))
        if run.full:
            await self._build_index(run)
        return removed

    def _cursor(self, run: RunState, confirmed: bool) -> list[Cursor]:
        """A confirmed run is a success after all: its tenant and service's cursor moves to it, unless a later run
        already moved it on."""
        return [self._channel.book.cursor_after(run, run.mark())] if confirmed else []

    async def _build_index(self, run: RunState) -> None:
        """A full run is the bulk load: build the search index now rather than on the first query. A failure
        leaves searches exact (slower, still right) until the next full run tries again; it stops nothing."""
        try:
            built = await asyncio.to_thread(self._store.optimize)
        # A failed build, or (rarely) a collection whose folder the store refuses: either way searches stay right.
        except (IndexBuildError, StoreError) as error:
            self.last_index_error = f"after run {run.run_id} ({run.service}): {error}"
            metrics.INDEX_BUILDS.labels("failed").inc()
            log.error("building the search index failed; searches stay exact until the next full run: %s", error)
        else:
            self.last_index_error = None
            metrics.INDEX_BUILDS.labels("built" if built else "skipped").inc()
