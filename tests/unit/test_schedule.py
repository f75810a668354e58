import asyncio
import contextlib
import json
from datetime import UTC, datetime

import pytest
from aiokafka.errors import KafkaConnectionError
from pydantic import ValidationError

from ragsync.events import Event
from ragsync.messaging.sync_requests import AdminSync, RequestDefaults
from ragsync.operations.endpoints import invalid_fields
from ragsync.producers.scheduler import Schedule, ScheduleError, SchedulePlan, Scheduler
from tests.unit.doubles import TOPICS, KeptPublisher, channel, unfed_ledger


def test_next_run_daily_at_two_utc() -> None:
    after = datetime(2026, 3, 10, 1, 30, tzinfo=UTC)
    assert Schedule("0 2 * * *").next_run(after) == datetime(2026, 3, 10, 2, 0, tzinfo=UTC)
    assert Schedule("0 2 * * *").next_run(datetime(2026, 3, 10, 2, 0, tzinfo=UTC)) == datetime(
        2026, 3, 11, 2, 0, tzinfo=UTC
    )


def test_next_run_reads_the_cron_in_its_time_zone() -> None:
    # 02:00 in Jerusalem is 00:00 UTC in winter (UTC+2) and 23:00 UTC the day before in summer (UTC+3).
    schedule = Schedule("0 2 * * *", "Asia/Jerusalem")
    assert schedule.next_run(datetime(2026, 1, 15, 12, 0, tzinfo=UTC)).astimezone(UTC) == datetime(
        2026, 1, 16, 0, 0, tzinfo=UTC
    )
    assert schedule.next_run(datetime(2026, 7, 15, 12, 0, tzinfo=UTC)).astimezone(UTC) == datetime(
        2026, 7, 15, 23, 0, tzinfo=UTC
    )


def test_every_fifteen_minutes() -> None:
    after = datetime(2026, 5, 1, 10, 7, tzinfo=UTC)
    assert Schedule("*/15 * * * *").next_run(after) == datetime(2026, 5, 1, 10, 15, tzinfo=UTC)


@pytest.mark.parametrize(
    ("cron", "zone", "fragment"),
    [
        ("0 25 * * *", "UTC", "BATCH_SYNC_SCHEDULE='0 25 * * *'"),
        ("every night", "UTC", "BATCH_SYNC_SCHEDULE"),
        ("0 2 * * *", "Mars/Olympus", "BATCH_SYNC_TIMEZONE='Mars/Olympus'"),
    ],
)
def test_bad_schedule_names_setting_and_value(cron: str, zone: str, fragment: str) -> None:
    with pytest.raises(ScheduleError) as raised:
        Schedule(cron, zone)
    assert fragment in str(raised.value)


async def test_the_scheduler_requests_each_default_service_with_its_trigger_and_a_queued_notice() -> None:
    publisher = KeptPublisher()
    defaults = RequestDefaults(services=("payment-service", "devlab-service"), tenant_id="acme", limit=250)
    scheduler = Scheduler(SchedulePlan(cron="*/5 * * * *"), defaults, channel(unfed_ledger(), publisher))
    await scheduler.fire("cron", "incremental")
    requests = publisher.on(TOPICS.sync_requests)
    assert [(r.service, r.tenant_id, r.sync_type, r.limit, r.trigger) for r in requests] == [
        ("payment-service", "acme", "incremental", 250, "cron"),
        ("devlab-service", "acme", "incremental", 250, "cron"),
    ]
    queued = publisher.on(TOPICS.sync_runs)
    assert [(q.kind, q.run_id) for q in queued] == [("queued", r.run_id) for r in requests]
    assert scheduler.state.runs_requested == 2 and scheduler.state.last_trigger == "cron"


CONFIGURED = ("payment-service", "devlab-service")
BAD_BODIES = [
    ('{"services": "payment-service"}', "services", "payment-service", "valid array"),
    ('{"services": ["payment-service", "labs-service"]}', "services", ["payment-service", "labs-service"], "labs"),
    ('{"services": ["payment-service", "payment-service"]}', "services", ["payment-service"] * 2, "more than once"),
    ('{"services": ["a", "b", "c"]}', "services", ["a", "b", "c"], "names 3 services; BATCH_SYNC_SERVICES has 2"),
    ('{"services": [7]}', "services.0", 7, "valid string"),
    ('{"sync_type": "hourly"}', "sync_type", "hourly", "'batch', 'daily' or 'incremental'"),
    ('{"colour": "red"}', "colour", "red", "Extra inputs are not permitted"),
    ('{"tenant_id": ""}', "tenant_id", "", "at least 1 character"),
    ('{"since": "last week"}', "since", "last week", "datetime"),
    ("[1]", "body", [1], "object"),
    ('{"services": ', "body", '{"services": ', "Invalid JSON"),
]


@pytest.mark.parametrize(("body", "field", "value", "problem"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_an_admin_body_is_refused_naming_the_field_and_the_value(
    body: str, field: str, value: object, problem: str
) -> None:
    with pytest.raises(ValidationError) as raised:
        AdminSync.parse(body.encode(), CONFIGURED)
    [said] = invalid_fields(raised.value)
    assert (said["field"], said["value"]) == (field, value)
    assert problem in said["problem"]


def test_a_long_bad_value_is_echoed_cut() -> None:
    with pytest.raises(ValidationError) as raised:
        AdminSync.parse(json.dumps({"tenant_id": "t" * 10_000}).encode(), CONFIGURED)
    [said] = invalid_fields(raised.value)
    assert said["field"] == "tenant_id" and said["value"] == '"' + "t" * 199 + "..."


async def test_an_admin_body_names_configured_services_and_the_scheduler_requests_them() -> None:
    publisher = KeptPublisher()
    scheduler = Scheduler(SchedulePlan(), RequestDefaults(services=CONFIGURED), channel(unfed_ledger(), publisher))
    answer = await scheduler.requested_over_http(b'{"services": ["devlab-service"], "tenant_id": "acme"}')
    [run] = answer["runs"]
    assert (run["service"], run["sync_type"]) == ("devlab-service", "batch")
    everything = await scheduler.requested_over_http(b"")
    assert [r["service"] for r in everything["runs"]] == list(CONFIGURED)
    assert [(r.service, r.tenant_id) for r in publisher.on(TOPICS.sync_requests)] == [
        ("devlab-service", "acme"),
        ("payment-service", "default-tenant"),
        ("devlab-service", "default-tenant"),
    ]
    with pytest.raises(ValidationError):
        await scheduler.requested_over_http(b'{"services": "payment-service"}')
    assert len(publisher.on(TOPICS.sync_requests)) == 3  # nothing published for a refused body


class _RefusingFirst(KeptPublisher):
    """Refuses the first event it is given (a broker down for a moment), then keeps them."""

    refused = False

    async def send(self, topic: str, key: str, event: Event) -> None:
        if not self.refused:
            self.refused = True
            raise KafkaConnectionError("injected: the broker is down")
        await super().send(topic, key, event)


async def test_each_schedule_is_a_stage_of_its_own_and_the_startup_sync_is_requested_once() -> None:
    publisher = _RefusingFirst()
    plan = SchedulePlan(on_startup=True, cron="0 2 * * *", incremental_cron="0 * * * *")
    scheduler = Scheduler(plan, RequestDefaults(services=("payment-service",)), channel(unfed_ledger(), publisher))
    stop = asyncio.Event()
    stages = scheduler.stages(stop)
    assert sorted(stages) == ["scheduler", "scheduler (incremental)"]

    with pytest.raises(KafkaConnectionError):  # the supervisor restarts the stage; the startup sync is still due
        await stages["scheduler"]()
    for _ in range(2):  # started, then restarted after a crash of its schedule
        following = asyncio.create_task(stages["scheduler"]())
        await asyncio.sleep(0.05)
        following.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await following
    requested = publisher.on(TOPICS.sync_requests)
    assert [(r.service, r.trigger) for r in requested] == [("payment-service", "startup")]
    assert set(scheduler.state.next_runs) == {"batch"}  # the incremental schedule runs in its own stage
