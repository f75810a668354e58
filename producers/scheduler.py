"""The scheduler: publishes sync requests on a cron schedule (croniter) and, if asked, once on start-up."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from ragsync.errors import SetupError
from ragsync.events import SyncType, Trigger
from ragsync.messaging.sync_requests import AdminSync, RequestDefaults, sync_requests
from ragsync.operations import metrics
from ragsync.runstate.channel import RunChannel

log = logging.getLogger(__name__)


class ScheduleError(SetupError):
    """A cron expression or time zone that cannot be used, so the scheduler cannot start; names the setting and
    the value."""


@dataclass(frozen=True)
class Schedule:
    """A cron expression read in a time zone."""

    cron: str
    timezone: str = "UTC"
    setting: str = "BATCH_SYNC_SCHEDULE"

    def __post_init__(self) -> None:
        if not croniter.is_valid(self.cron):
            raise ScheduleError(f"{self.setting}={self.cron!r} is not a valid cron expression")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ScheduleError(f"BATCH_SYNC_TIMEZONE={self.timezone!r} is not a known time zone") from error

    def next_run(self, after: datetime) -> datetime:
        """The first run strictly after `after` (aware), in the schedule's time zone."""
        local = after.astimezone(ZoneInfo(self.timezone))
        result: datetime = croniter(self.cron, local).get_next(datetime)
        return result


@dataclass
class SchedulerState:
    """What `/status` shows of the scheduler."""

    enabled: bool
    cron: str
    timezone: str
    incremental_cron: str | None = None
    next_runs: dict[str, datetime] = field(default_factory=dict)
    last_run: datetime | None = None
    last_trigger: Trigger | None = None
    runs_requested: int = 0

    @property
    def next_run(self) -> datetime | None:
        """The next time any schedule fires."""
        return min(self.next_runs.values(), default=None)

    def as_json(self) -> dict[str, Any]:
        """What `/status` shows."""
        return {
            "enabled": self.enabled,
            "cron": self.cron,
            "incremental_cron": self.incremental_cron,
            "timezone": self.timezone,
            "next_run": self.next_run.isoformat() if self.next_run else None,
            "next_runs": {kind: when.isoformat() for kind, when in self.next_runs.items()},
            "last_run": self.last_run.isoformat() if self.last_run else None,
            "last_trigger": self.last_trigger,
            "runs_requested": self.runs_requested,
        }


@dataclass(frozen=True, kw_only=True)
class SchedulePlan:
    """When the scheduler publishes: on/off, on start-up, the full and incremental crons and their time zone."""

    enabled: bool = True
    on_startup: bool = False
    cron: str = "0 2 * * *"
    timezone: str = "UTC"
    incremental_cron: str | None = None


class Scheduler:
    """Publishes a sync request per configured service at each scheduled time: full syncs on
    BATCH_SYNC_SCHEDULE and, when INCREMENTAL_SYNC_SCHEDULE is set, incremental ones on it."""

    def __init__(self, plan: SchedulePlan, defaults: RequestDefaults, channel: RunChannel) -> None:
        self._channel = channel
        self._plan = plan
        self._defaults = defaults
        self.schedules: dict[SyncType, Schedule] = {"batch": Schedule(plan.cron, plan.timezone)}
        if plan.incremental_cron:
            self.schedules["incremental"] = Schedule(
                plan.incremental_cron, plan.timezone, setting="INCREMENTAL_SYNC_SCHEDULE"
            )
        self.state = SchedulerState(plan.enabled, plan.cron, plan.timezone, plan.incremental_cron)
        self._fired_on_startup = False

    async def fire(self, trigger: Trigger, sync_type: SyncType = "batch") -> None:
        """Request a sync of every configured service now."""
        requests = sync_requests(self._defaults, None, trigger, sync_type)
        await self._channel.request(requests)
        self.state.last_run = datetime.now(UTC)
        self.state.last_trigger = trigger
        self.state.runs_requested += len(requests)
        metrics.SCHEDULER_LAST_RUN.set(self.state.last_run.timestamp())

    async def requested_over_http(self, body: bytes) -> dict[str, Any]:
        """`POST /admin/sync`: the body is an `AdminSync` (`{"services": [...], "sync_type": "batch", "tenant_id":
        ..., "since": ...}`, all optional); raises pydantic's `ValidationError` for anything else."""
        order = AdminSync.parse(body, self._defaults.services)
        requests = sync_requests(self._defaults, order.services, "http", order.sync_type, order.since, order.tenant_id)
        await self._channel.request(requests)
        self.state.runs_requested += len(requests)
        return {"runs": [{"service": r.service, "run_id": r.run_id, "sync_type": r.sync_type} for r in requests]}

    def stages(self, stop: asyncio.Event) -> dict[str, Callable[[], Coroutine[Any, Any, None]]]:
        """One stage per schedule, each supervised on its own: a schedule that crashes is restarted alone, and
        never leaves the other running twice beside its restart."""
        return {
            "scheduler" if kind == "batch" else f"scheduler ({kind})": functools.partial(self.run, stop, kind)
            for kind in self.schedules
        }

    async def run(self, stop: asyncio.Event, kind: SyncType = "batch") -> None:
        """Fire on start-up if configured (once a process: not again when the stage is restarted), then on the
        `kind` schedule until `stop` is set."""
        if not self._plan.enabled:
            if kind == "batch":
                log.warning("BATCH_SYNC_ENABLED=false: the scheduler publishes nothing (manual triggers still work)")
            await stop.wait()
            return
        if self._plan.on_startup and kind == "batch" and not self._fired_on_startup:
            await self.fire("startup")
            self._fired_on_startup = True
        await self._follow(kind, self.schedules[kind], stop)

    async def _follow(self, kind: SyncType, schedule: Schedule, stop: asyncio.Event) -> None:
        while not stop.is_set():
            when = self.state.next_runs[kind] = schedule.next_run(datetime.now(UTC))
            if self.state.next_run is not None:
                metrics.SCHEDULER_NEXT_RUN.set(self.state.next_run.timestamp())
            log.info(
                "scheduler: next %s sync of %s at %s (%s, %s)",
                kind,
                ", ".join(self._defaults.services),
                when.isoformat(),
                schedule.cron,
                schedule.timezone,
            )
            try:
                await asyncio.wait_for(stop.wait(), timeout=max((when - datetime.now(UTC)).total_seconds(), 0))
            except TimeoutError:
                await self.fire("cron", kind)
