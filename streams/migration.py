"""Changing the embedding model: re-embed everything into the new model's collection, then switch the alias.

Searches read the alias, so they keep seeing the old, complete index until the new one is complete: every
configured service has a full run that succeeded after the migration began. Complete is not enough: a full run
that the Coordinator answered empty, or cut short, succeeds into a new collection with nothing in it to delete,
so no deletion budget would hold it, and switching to it would take the service's points out of every search.
The switch is judged against the deletion budget like a deletion: a service with fewer items (first points: how
many chunks an item has depends on the model) in the new collection than in the one searches see, by more than
RUN_MAX_DELETE_SHARE, holds it until a later full run fills the new collection, or a person lifts the budget.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from ragsync.events import Deletion, RunMark
from ragsync.messaging.sync_requests import RequestDefaults, sync_requests
from ragsync.operations import metrics
from ragsync.runstate.channel import RunChannel
from ragsync.runstate.deletions import DeletionBudget
from ragsync.store import VectorStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeldSwitch:
    """Why the alias is not switched: the service whose items the new collection would lose, and what to do."""

    service: str
    reason: str


class ModelMigration:
    """Requests full syncs into the new collection and switches the alias once they all succeeded, unless the
    new collection would lose more of a service's points than the deletion budget allows."""

    def __init__(
        self, defaults: RequestDefaults, store: VectorStore, channel: RunChannel, budget: DeletionBudget
    ) -> None:
        self._defaults = defaults
        self._channel = channel
        self._store = store
        self._budget = budget
        self.began = datetime.now(UTC)
        self.done = False
        self.held: HeldSwitch | None = None
        self._judged: tuple[str, ...] = ()  # the full runs the switch was last judged after
        self._requested = False  # the full syncs, once: not again when the stage is restarted

    def complete(self) -> bool:
        """Whether every configured service has a full run that succeeded since the migration began."""
        return all(
            (last := self._last_full(service)) is not None and last.started_at >= self.began
            for service in self._defaults.services
        )

    def _last_full(self, service: str) -> RunMark | None:
        return self._channel.book.last_success(self._defaults.tenant_id, service, full=True)

    def judge(self) -> HeldSwitch | None:
        """Why switching now would lose searchable items, for the first service that would; None if it may. Items,
        not points: how many chunks an item has depends on the model."""
        live = self._store.live_collection()
        target = self._store.target
        for service in self._defaults.services:
            before = self._store.items(service, live) if live else 0
            after = self._store.items(service, target)
            lost = Deletion(swept=max(0, before - after), points=before)
            if self._budget.holds(lost, empty_full_answer=after == 0):
                return HeldSwitch(service, self._reason(service, before, after, lost, live))
        return None

    def _reason(self, service: str, before: int, after: int, lost: Deletion, live: str | None) -> str:
        return (
            f"model change held: {self._store.target} holds {after} items of {service} against {before} in {live}, "
            f"which searches still use ({lost.share:.0%} fewer, over RUN_MAX_DELETE_SHARE "
            f"{self._budget.max_share:.0%}); nothing was switched. If the Coordinator answered {service}'s full sync "
            f"short, fix it and sync {service} again: the next full run is judged afresh. If those records really "
            "went away upstream, restart the embedders once with RUN_MAX_DELETE_SHARE=1 to switch"
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Request the full syncs, wait for them, judge the new collection, switch the alias."""
        live = self._store.live_collection()
        log.warning("embedding model changed: filling %s while searches still use %s", self._store.target, live)
        if not self._requested:
            await self._channel.request(sync_requests(self._defaults, None, "model-change", "batch"))
            self._requested = True
        while not stop.is_set():
            if self.complete() and await self._may_switch():
                await asyncio.to_thread(self._store.switch_alias)
                log.warning("model change complete: %s now serves searches", self._store.target)
                self.done = True
                return
            await asyncio.sleep(1.0)

    async def _may_switch(self) -> bool:
        """Judged once per set of full runs (two counts a service), and again only after a newer one."""
        runs = tuple(mark.run_id for s in self._defaults.services if (mark := self._last_full(s)) is not None)
        if runs != self._judged:
            self.held = await asyncio.to_thread(self.judge)
            self._judged = runs  # only once judged: a judgement that raised is made again after the restart
            if self.held is not None:
                log.error("%s", self.held.reason)
                metrics.DELETIONS_HELD.labels(metrics.service_label(self.held.service)).inc()
        return self.held is None
