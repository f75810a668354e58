"""The stall watchdog as a stage: the run state in, a re-request or a failure out, at a time the test chooses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ragsync.events import SyncRequest, TenantRequest, WatchdogNotice
from ragsync.streams.watchdog import StallRules, Watchdog
from tests.unit.doubles import TOPICS, KeptPublisher, channel, fetching, unfed_ledger


def _watchdog(started: datetime, max_resumes: int = 1) -> tuple[Watchdog, KeptPublisher, TenantRequest]:
    publisher, ledger = KeptPublisher(), unfed_ledger(TOPICS.sync_runs)
    request = TenantRequest(service="payment-service", tenant_id="acme")
    ledger.record(fetching(request, pages=4, started_at=started, at=started))
    rules = StallRules(stall_timeout_s=600, max_resumes=max_resumes)
    return Watchdog(rules, channel(ledger, publisher)), publisher, request


async def test_a_run_idle_past_the_timeout_is_re_requested_then_failed() -> None:
    # Its notices are stamped with the real clock, so the checks' times are set around it.
    now = datetime.now(UTC)
    watchdog, publisher, request = _watchdog(now - timedelta(seconds=700), max_resumes=1)
    await watchdog.check(now - timedelta(seconds=101))
    assert publisher.sent == []  # not idle long enough

    await watchdog.check(now)
    [again] = publisher.on(TOPICS.sync_requests)
    assert isinstance(again, SyncRequest) and (again.run_id, again.trigger) == (request.run_id, "watchdog")
    [stalled] = publisher.on(TOPICS.sync_runs)
    assert isinstance(stalled, WatchdogNotice) and stalled.status == "stalled"
    assert stalled.error == "no progress for 700s after page 4; re-requested to resume from page 5"

    await watchdog.check(now + timedelta(seconds=700))
    failed = publisher.on(TOPICS.sync_runs)[-1]
    assert isinstance(failed, WatchdogNotice) and failed.status == "failed"
    assert failed.error is not None and "gave up after 1 re-requests" in failed.error
    assert len(publisher.on(TOPICS.sync_requests)) == 1  # no re-request after giving up
