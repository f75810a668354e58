"""The fetcher agent as a stage: a typed sync request in, a decision out (run, resume, re-key, skip, ignore).
No broker and no Coordinator: the run ledger knows what the test folds into it, the publisher keeps what it is
given, and the runner records the requests it was given to fetch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ragsync.events import (
    Cursor,
    DeadLetter,
    FetchProgress,
    RunEnded,
    RunMark,
    SyncRequest,
    TenantRequest,
)
from ragsync.messaging.delivery import Position
from ragsync.runstate.ledger import RunLedger
from ragsync.streams.fetcher import FetcherAgent, FetchOutcome, SyncRunner
from tests.unit.doubles import TOPICS, KeptPublisher, channel, fetching, unfed_ledger

KEY = "default-tenant/payment-service"


class RecordingRunner(SyncRunner):
    """Records each fetch it is asked for (the fetch itself is covered against a real gRPC Coordinator)."""

    def __init__(self) -> None:
        self.fetched: list[tuple[TenantRequest, FetchProgress | None]] = []

    async def run(self, request: TenantRequest, resume: FetchProgress | None = None) -> FetchOutcome:
        self.fetched.append((request, resume))
        return FetchOutcome(run_id=request.run_id, service=request.service)


def _agent() -> tuple[FetcherAgent, RecordingRunner, KeptPublisher, RunLedger]:
    runner, publisher, ledger = RecordingRunner(), KeptPublisher(), unfed_ledger(TOPICS.sync_runs)
    agent = FetcherAgent(runner, channel(ledger, publisher), default_tenant="default-tenant", stall_timeout_s=600)
    return agent, runner, publisher, ledger


async def test_a_request_naming_no_tenant_runs_for_the_default_tenant() -> None:
    agent, runner, publisher, _ = _agent()
    request = SyncRequest(service="payment-service")
    await agent.handle(request, KEY)
    [(fetched, resume)] = runner.fetched
    assert (fetched.run_id, fetched.tenant_id, resume) == (request.run_id, "default-tenant", None)
    assert publisher.sent == []


async def test_a_request_under_another_key_is_re_keyed_not_run() -> None:
    agent, runner, publisher, _ = _agent()
    await agent.handle(SyncRequest(service="payment-service"), None)  # e.g. published without a key
    assert runner.fetched == []
    [(topic, key, event)] = publisher.sent
    assert (topic, key, event.tenant_id) == (TOPICS.sync_requests, KEY, "default-tenant")


async def test_a_finished_run_is_not_fetched_again_and_a_checkpoint_is_resumed() -> None:
    agent, runner, _, ledger = _agent()
    done = TenantRequest(service="payment-service", tenant_id="default-tenant")
    ledger.record(RunEnded(run_id=done.run_id, tenant_id="default-tenant", service="payment-service"))
    await agent.handle(done, KEY)
    assert runner.fetched == []

    half = TenantRequest(service="payment-service", tenant_id="default-tenant")
    # Long still: not live, so not blocking itself.
    ledger.record(fetching(half, pages=3, at=datetime.now(UTC) - timedelta(hours=1)))
    await agent.handle(half, KEY)
    [(_, resume)] = runner.fetched
    assert resume is not None and resume.pages == 3


async def test_a_request_while_another_run_of_the_service_is_live_is_skipped_with_the_reason() -> None:
    agent, runner, publisher, ledger = _agent()
    live = TenantRequest(service="payment-service", tenant_id="default-tenant")
    ledger.record(fetching(live))
    second = SyncRequest(service="payment-service")
    await agent.handle(second, KEY)
    assert runner.fetched == []
    [skipped] = publisher.on(TOPICS.sync_runs)
    assert isinstance(skipped, FetchProgress) and skipped.status == "skipped"
    assert skipped.error == f"run {live.run_id} of default-tenant/payment-service is still active"


async def test_an_incremental_request_starts_where_the_last_success_started() -> None:
    agent, runner, _, ledger = _agent()
    started = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)
    mark = RunMark(run_id="before", sync_type="batch", started_at=started, finished_at=started + timedelta(minutes=5))
    ledger.record(Cursor(tenant_id="default-tenant", service="payment-service", last_success=mark))
    await agent.handle(SyncRequest(service="payment-service", sync_type="incremental"), KEY)
    [(fetched, _)] = runner.fetched
    assert fetched.since == started


async def test_a_message_that_is_no_sync_request_is_dead_lettered_naming_the_field() -> None:
    agent, runner, publisher, _ = _agent()
    at = Position(TOPICS.sync_requests, 2, 41)
    await agent.receive(b"x", b'{"service": "payment-service", "sync_type": "hourly"}', at)
    assert runner.fetched == []
    [letter] = publisher.on(TOPICS.dead_letters)
    assert isinstance(letter, DeadLetter) and "sync_type" in letter.reason and "hourly" in letter.reason
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == (TOPICS.sync_requests, 2, 41)
