"""The stall watchdog: no run stays "in progress" forever.

A run with no progress for RUN_STALL_TIMEOUT while work remains is marked stalled (logged, counted) and acted
on: a run still fetching (or never picked up) is re-requested, and the fetcher resumes it from its checkpoint;
after WATCHDOG_MAX_RESUMES re-requests, or when items wait for an embedder that never comes, it is failed with
the reason.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from ragsync.events import WatchdogNotice
from ragsync.keys import request_key
from ragsync.operations import metrics
from ragsync.runstate.channel import RunChannel
from ragsync.runstate.runs import RunState

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class StallRules:
    """When a run counts as stalled, how often to look, and how many re-requests before it is failed."""

    stall_timeout_s: float = 600.0
    interval_s: float = 30.0
    max_resumes: int = 3


class Watchdog:
    """Checks the ledger's active runs every `interval_s` seconds."""

    def __init__(self, rules: StallRules, channel: RunChannel) -> None:
        self._rules = rules
        self._channel = channel
        self.checks = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Check until `stop` is set."""
        while not stop.is_set():
            await self.check(datetime.now(UTC))
            try:
                await asyncio.wait_for(stop.wait(), timeout=self._rules.interval_s)
            except TimeoutError:
                continue

    async def check(self, now: datetime) -> None:
        """Act on every run idle for longer than the stall timeout."""
        await self._channel.caught_up()
        self.checks += 1
        for run in self._channel.book.active():
            if run.idle_seconds(now) >= self._rules.stall_timeout_s:
                last = run.last_progress_at or run.started_at or now
                await self._act(run, (now - last).total_seconds())
        await self._channel.flush()

    async def _act(self, run: RunState, idle: float) -> None:
        if run.fetch_done:
            reason = (
                f"no embedder progress for {idle:.0f}s: {run.items_pending} of {run.items_fetched} items are "
                "not in Qdrant (is an embedder running? the items stay in the items topic)"
                if run.items_pending
                else f"every item is stored, but for {idle:.0f}s no embedder confirmed that its group committed "
                "past the run's offsets (is an embedder running? see its /status, last_completion_error)"
            )
            if run.stalls >= self._rules.max_resumes:
                await self._fail(run, reason)
            else:
                await self._stalled(run, reason, "waiting")
            return
        where = f"after page {run.last_page}" if run.pages else "before its first page"
        reason = f"no progress for {idle:.0f}s {where}"
        if run.stalls >= self._rules.max_resumes or run.request is None:
            why = "" if run.request else " (its request is unknown, so it cannot be re-requested)"
            await self._fail(run, f"{reason}; gave up after {run.stalls} re-requests{why}")
            return
        await self._stalled(run, f"{reason}; re-requested to resume from page {run.last_page + 1}", "resumed")
        request = run.request.model_copy(update={"trigger": "watchdog"})
        await self._channel.send_request(request_key(run.tenant_id, run.service), request)

    async def _stalled(self, run: RunState, reason: str, action: str) -> None:
        log.error("run %s (%s) stalled: %s", run.run_id, run.service, reason)
        metrics.STALLS.labels(metrics.service_label(run.service), action).inc()
        await self._notice(run, "stalled", reason, run.stalls + 1)

    async def _fail(self, run: RunState, reason: str) -> None:
        log.error("run %s (%s) failed by the watchdog: %s", run.run_id, run.service, reason)
        metrics.STALLS.labels(metrics.service_label(run.service), "failed").inc()
        metrics.RUNS_FAILED.labels(metrics.service_label(run.service)).inc()  # a failed run, whoever failed it
        await self._notice(run, "failed", f"stalled: {reason}", run.stalls)

    async def _notice(self, run: RunState, status: Literal["stalled", "failed"], reason: str, stalls: int) -> None:
        notice = WatchdogNotice(
            run_id=run.run_id, tenant_id=run.tenant_id, service=run.service, status=status, stalls=stalls, error=reason
        )
        await self._channel.report(notice)
