"""Ends runs by offsets, not by ids: a run succeeds once the embedder group committed past every mark.

Before a run succeeds, its deletions (a full run's sweep, the records flagged deleted) are counted and judged
against the deletion budget: over it, the run ends failed and held, and nothing is deleted.

The fetcher records, per items partition, the highest offset the broker acknowledged for the run (its marks).
The embedder group commits a batch only after Qdrant acknowledged it and its counts were published. So once the
fetch is done and the group's committed offset on each marked partition is past the mark, every item event of
the run was stored (or dead-lettered) and committed: the run succeeded. The counts must agree too (at least as many
events settled as produced), which also makes sure this process has read the members' reports.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from ragsync.events import Deletion, RunEnded, RunMark
from ragsync.items import NO_ID
from ragsync.messaging.kafka import Committed
from ragsync.operations import metrics
from ragsync.operations.logs import about_run
from ragsync.operations.supervision import unless_stopped
from ragsync.runstate.channel import RunChannel
from ragsync.runstate.deletions import DeletionGuard
from ragsync.runstate.runs import RunState
from ragsync.store import StoreError

log = logging.getLogger(__name__)

CHECK_EVERY_S = 1.0  # a run is also checked when its state changes and after every commit in this process
COMMITTED_TIMEOUT_S = 5.0


class RunCompletion:
    """Watches the runs whose fetch is done and whose events are all counted, and ends each once the group's
    committed offsets passed its marks."""

    def __init__(
        self,
        channel: RunChannel,
        committed: Committed,
        guard: DeletionGuard,
        max_dead_letter_share: float = 0.5,
    ) -> None:
        self._channel = channel
        self._guard = guard
        self._max_dead_letter_share = max_dead_letter_share
        self._committed = committed
        self._candidates: set[str] = {run.run_id for run in channel.book.active()}
        self._wake = asyncio.Event()
        self.last_error: str | None = None
        channel.ledger.listeners.append(self._notice)

    def _notice(self, run: RunState) -> None:
        if run.settled_by_count:
            self._candidates.add(run.run_id)
            self._wake.set()

    def wake(self) -> None:
        """Check now (a member committed a batch)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Check the candidates whenever woken, and every second, until `stop` is set."""
        while not stop.is_set():
            await unless_stopped(self._wake.wait(), stop, CHECK_EVERY_S)
            self._wake.clear()
            await self.check()

    async def check(self) -> None:
        """End every candidate run that is complete; drop those that finished or are not settled."""
        for run_id in sorted(self._candidates):
            run = self._channel.book.get(run_id)
            if run is None or not run.settled_by_count:
                self._candidates.discard(run_id)  # finished, expired, or not counted yet: noticed again if it is
                continue
            try:
                if await self._passed(run):
                    with about_run(run.run_id, run.tenant_id, run.service):
                        await self._end(run)
                    self._candidates.discard(run_id)
            except (KafkaError, OSError, TimeoutError, StoreError) as error:
                self.last_error = f"{type(error).__name__}: {error}"
                metrics.COMPLETION_CHECK_FAILURES.inc()
                log.warning("could not decide whether runs are complete (retrying): %s", self.last_error)
                return
            self.last_error = None

    async def _passed(self, run: RunState) -> bool:
        for partition, mark in sorted(run.marks.items()):
            tp = TopicPartition(self._channel.topics.items, partition)
            committed = await asyncio.wait_for(self._committed(tp), COMMITTED_TIMEOUT_S)
            if committed is None or committed <= mark:
                return False
        return True

    async def _end(self, run: RunState) -> None:
        """Publish the run's end: failed when too many of its records were dead-lettered, or held when its
        deletions are over the budget, else succeeded, and its service's cursor moves to it."""
        error = tolerance_error(run, self._max_dead_letter_share)
        if error is not None:
            await self._fail(run, error)
            return
        deletion, held = await self._guard.check(run)
        if held is not None:
            metrics.DELETIONS_HELD.labels(metrics.service_label(run.service)).inc()
            await self._fail(run, held, deletion)
            return
        ended = RunEnded(run_id=run.run_id, tenant_id=run.tenant_id, service=run.service)
        assert run.request is not None and run.started_at is not None  # a fetched run has both
        mark = RunMark(
            run_id=run.run_id, sync_type=run.request.sync_type, started_at=run.started_at, finished_at=ended.at
        )
        await self._channel.report(ended, self._channel.book.cursor_after(run, mark))
        self._log_success(run)

    async def _fail(self, run: RunState, error: str, held: Deletion | None = None) -> None:
        failed = RunEnded(
            run_id=run.run_id, tenant_id=run.tenant_id, service=run.service, status="failed", error=error, held=held
        )
        await self._channel.report(failed)
        metrics.RUNS_FAILED.labels(metrics.service_label(run.service)).inc()
        log.error("run %s (%s) failed: %s", run.run_id, run.service, error)

    @staticmethod
    def _log_success(run: RunState) -> None:
        log.info(
            "run %s (%s) succeeded: %d items, %d upserted, %d unchanged, %d dead-lettered",
            run.run_id,
            run.service,
            run.items_fetched,
            run.items_upserted,
            run.items_skipped,
            run.dead_lettered,
        )


def tolerance_error(run: RunState, max_share: float) -> str | None:
    """Why a run whose every record was processed fails anyway, as Kafka Connect's errors.tolerance would have it:
    more of its records dead-lettered than `max_share` (RUN_MAX_DEAD_LETTER_SHARE), or records came in and none
    was stored, unchanged or deleted. None when it succeeds; `max_share` 1 never fails a run."""
    reasons = Counter(run.fetch.dead_reasons if run.fetch else {})
    if run.embed_dead_lettered:
        reasons[NO_TEXT] += run.embed_dead_lettered
    records = run.items_fetched + (run.fetch.dead_lettered if run.fetch else 0)
    dead = run.dead_lettered
    kept = run.items_settled - run.embed_dead_lettered
    if max_share >= 1 or records == 0 or not dead:
        return None
    if kept > 0 and dead / records <= max_share:
        return None
    kind, count = reasons.most_common(1)[0] if reasons else ("unknown", dead)
    what = (
        f"none of its {records} records was stored"
        if kept == 0
        else f"{dead} of {records} records were dead-lettered ({dead / records:.0%}, over "
        f"RUN_MAX_DEAD_LETTER_SHARE={max_share:g})"
    )
    example = run.fetch.dead_examples.get(kind) if run.fetch else None
    fix = f"for example: {example}" if example else FIXES.get(kind, FIX_ANY)
    listing = f"ragsync dead-letters list --run-id {run.run_id}"
    return f"{what}; most common reason: {kind} ({count}); {fix}; see `{listing}`"


NO_TEXT = "no text to embed"
FIX_ANY = "fix the records or the service's schema, or raise RUN_MAX_DEAD_LETTER_SHARE"
FIXES = {
    NO_ID: "give the service a schema, SCHEMAS_DIR/<service>.toml with id_field naming the records' id",
    NO_TEXT: "give the service a schema whose text_fields name the fields to embed",
}
