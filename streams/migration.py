"""Changing the embedding model: re-embed everything into the new model's collection, then switch the alias.

Searches read the alias, so they keep seeing the old, complete index until the new one is complete: every
configured service has a full run that succeeded after the migration began.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from ragsync.messaging.sync_requests import RequestDefaults, sync_requests
from ragsync.runstate.channel import RunChannel
from ragsync.store import VectorStore

log = logging.getLogger(__name__)


class ModelMigration:
    """Requests full syncs into the new collection and switches the alias once they all succeeded."""

    def __init__(self, defaults: RequestDefaults, store: VectorStore, channel: RunChannel) -> None:
        self._defaults = defaults
        self._channel = channel
        self._store = store
        self.began = datetime.now(UTC)
        self.done = False

    def complete(self) -> bool:
        """Whether every configured service has a full run that succeeded since the migration began."""
        for service in self._defaults.services:
            last = self._channel.book.last_success(self._defaults.tenant_id, service, full=True)
            if last is None or last.started_at < self.began:
                return False
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Request the full syncs, wait for them, switch the alias."""
        live = self._store.live_collection()
        log.warning("embedding model changed: filling %s while searches still use %s", self._store.target, live)
        requests = sync_requests(self._defaults, None, "model-change", "batch")
        await self._channel.request(requests)
        while not stop.is_set():
            if self.complete():
                await asyncio.to_thread(self._store.switch_alias)
                log.warning("model change complete: %s now serves searches", self._store.target)
                self.done = True
                return
            await asyncio.sleep(1.0)
