"""Run history retention: finished runs past RUN_HISTORY_DAYS, or past the newest RUN_HISTORY_PER_SERVICE of their
tenant and service, are removed from the run-state topic with a tombstone per key.

On a compacted topic the broker then drops their records for good, so every component's start-up reads only the
runs kept. Cursors are never removed: incremental syncs and the last-success alert need them however old they are.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ragsync.messaging.kafka import Publisher
from ragsync.messaging.topics import Topics
from ragsync.operations import metrics
from ragsync.runstate.keys import run_key
from ragsync.runstate.ledger import RunLedger

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class History:
    """How much run history is kept."""

    days: float
    per_service: int


class RunRetention:
    """Removes expired runs from the run-state topic."""

    def __init__(self, history: History, ledger: RunLedger, publisher: Publisher, topics: Topics) -> None:
        self._history = history
        self._ledger = ledger
        self._publisher = publisher
        self._topics = topics

    async def expire(self, now: datetime) -> int:
        """Tombstone every key of each expired run; how many runs were removed."""
        before = now - timedelta(days=self._history.days)
        expired = self._ledger.book.expired(before, self._history.per_service)
        for run in expired:
            for part, member in run.parts:
                key = run_key(run.tenant_id, run.service, run.run_id, part, member)
                await self._publisher.send_raw(self._topics.sync_runs, key.encode(), None)
        await self._publisher.flush()
        for run in expired:
            self._ledger.book.forget(run.run_id)
        if expired:
            metrics.RUN_RECORDS_EXPIRED.inc(len(expired))
            log.info("removed %d finished runs from %s (kept: %s)", len(expired), self._topics.sync_runs, self._history)
        return len(expired)

    async def run(self, stop: asyncio.Event, interval: float) -> None:
        """Expire every `interval` seconds until `stop` is set."""
        while not stop.is_set():
            await self.expire(datetime.now(UTC))
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval)
            except TimeoutError:
                continue
