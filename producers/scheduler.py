"""The scheduler: publishes sync requests on a cron schedule (croniter) and, if asked, once on start-up."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from producers.trigger import publish_requests, sync_requests
from ragsync import metrics
from ragsync.errors import SetupError
from ragsync.events import Trigger
from ragsync.kafka import Publisher
from ragsync.settings import Settings
from ragsync.topics import Topics

log = logging.getLogger(__name__)


class ScheduleError(SetupError):
    """A cron expression or time zone that cannot be used; names the setting and value."""


@dataclass(frozen=True)
class Schedule:
    """A cron expression read in a time zone."""

    cron: str
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        if not croniter.is_valid(self.cron):
            raise ScheduleError(f"BATCH_SYNC_SCHEDULE={self.cron!r} is not a valid cron expression")
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
    next_run: datetime | None = None
    last_run: datetime | None = None
    last_trigger: Trigger | None = None
    runs_requested: int = 0

    def as_json(self) -> dict[str, Any]:
        """What `/status` shows."""
        return {
            "enabled": self.enabled,
            "cron": self.cron,
            "timezone": self.timezone,
            "next_run": self.next_run.isoformat() if self.next_run else None,
            "last_run": self.last_run.isoformat() if self.last_run else None,
            "last_trigger": self.last_trigger,
            "runs_requested": self.runs_requested,
        }


class Scheduler:
    """Publishes a sync request per configured service at each scheduled time."""

    def __init__(self, settings: Settings, publisher: Publisher, topics: Topics) -> None:
        self._settings = settings
        self._publisher = publisher
        self._topics = topics
        self.schedule = Schedule(settings.batch_sync_schedule, settings.batch_sync_timezone)
        self.state = SchedulerState(settings.batch_sync_enabled, self.schedule.cron, self.schedule.timezone)

    async def fire(self, trigger: Trigger) -> None:
        """Request a sync of every configured service now."""
        requests = sync_requests(self._settings, None, trigger)
        await publish_requests(self._publisher, self._topics, requests)
        self.state.last_run = datetime.now(UTC)
        self.state.last_trigger = trigger
        metrics.SCHEDULER_LAST_RUN.set(self.state.last_run.timestamp())
        self.state.runs_requested += len(requests)

    async def run(self, stop: asyncio.Event) -> None:
        """Fire on start-up if configured, then at each cron time until `stop` is set."""
        if not self._settings.batch_sync_enabled:
            log.warning("BATCH_SYNC_ENABLED=false: the scheduler publishes nothing (manual triggers still work)")
            await stop.wait()
            return
        if self._settings.batch_sync_on_startup:
            await self.fire("startup")
        while not stop.is_set():
            self.state.next_run = self.schedule.next_run(datetime.now(UTC))
            metrics.SCHEDULER_NEXT_RUN.set(self.state.next_run.timestamp())
            log.info(
                "scheduler: next sync of %s at %s (%s, %s)",
                ", ".join(self._settings.batch_sync_services),
                self.state.next_run.isoformat(),
                self.schedule.cron,
                self.schedule.timezone,
            )
            delay = (self.state.next_run - datetime.now(UTC)).total_seconds()
            try:
                await asyncio.wait_for(stop.wait(), timeout=max(delay, 0))
            except TimeoutError:
                await self.fire("cron")
