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

from ragsync.keys import run_key
from ragsync.operations import metrics
from ragsync.runstate.channel import RunChannel

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class History:
    """How much run history is kept."""

    days: float
    per_service: int


class RunRetention:
    """Removes expired runs from the run-state topic."""

    def __init__(self, history: History, channel: RunChannel) -> None:
        self._history = history
        self._channel = channel

    async def expire(self, now: datetime) -> int:
        """Tombstone every key of each expired run; how many runs were removed."""
        before = now - timedelta(days=self._history.days)
        expired = self._channel.book.expired(before, self._history.per_service)
        for run in expired:
            for part, member in run.parts:
                key = run_key(run.tenant_id, run.service, run.run_id, part, member)
                await self._channel.forget(key)
        await self._channel.flush()
        for run in expired:
            self._channel.book.forget(run.run_id)
        if expired:
            metrics.RUN_RECORDS_EXPIRED.inc(len(expired))
            log.info(
                "removed %d finished runs from %s (kept: %s)",
                len(expired),
                self._channel.topics.sync_runs,
                self._history,
            )
        return len(expired)

    async def run(self, stop: asyncio.Event, interval: float) -> None:
        """Expire every `interval` seconds until `stop` is set."""
        while not stop.is_set():
            await self.expire(datetime.now(UTC))
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval)
            except TimeoutError:
                continue
