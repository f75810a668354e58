"""The run ledger against the real broker: `caught_up` means every event published before it was folded."""

from __future__ import annotations

import asyncio
import time

import pytest

from ragsync.app.application import App
from ragsync.events import RunQueued, SyncRequest
from ragsync.settings import Settings


@pytest.mark.parametrize("prompt", [True, False], ids=["prompt", "settings-wait"])
async def test_caught_up_has_folded_every_event_published_before_the_call(settings: Settings, prompt: bool) -> None:
    app = App(settings)
    await app.ensure_topics()
    waits = []
    async with app.ledger(prompt=prompt) as ledger, app.publisher() as publisher:
        await ledger.caught_up()
        for index in range(12):
            # An idle ledger has a fetch waiting at the broker; its answer may predate the event.
            await asyncio.sleep(0.05 * (index % 4))
            request = SyncRequest(run_id=f"run-{index}", tenant_id="t", service="s")
            event = RunQueued(run_id=request.run_id, tenant_id="t", service="s", request=request)
            await publisher.send(app.topics.sync_runs, event.key, event)
            await publisher.flush()
            started = time.perf_counter()
            await ledger.caught_up()
            waits.append(time.perf_counter() - started)
            assert event.run_id in ledger.book.runs, f"caught up without {event.run_id} (try {index})"
    assert max(waits) < 5, waits
