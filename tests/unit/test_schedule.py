from datetime import UTC, datetime

import pytest

from ragsync.producers.scheduler import Schedule, ScheduleError, SchedulePlan, Scheduler
from ragsync.requests import RequestDefaults
from tests.unit.doubles import TOPICS, KeptPublisher


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
    defaults = RequestDefaults(("payment-service", "devlab-service"), tenant_id="acme", limit=250)
    scheduler = Scheduler(SchedulePlan(cron="*/5 * * * *"), defaults, publisher, TOPICS)
    await scheduler.fire("cron", "incremental")
    requests = publisher.on(TOPICS.sync_requests)
    assert [(r.service, r.tenant_id, r.sync_type, r.limit, r.trigger) for r in requests] == [
        ("payment-service", "acme", "incremental", 250, "cron"),
        ("devlab-service", "acme", "incremental", 250, "cron"),
    ]
    queued = publisher.on(TOPICS.sync_runs)
    assert [(q.kind, q.run_id) for q in queued] == [("queued", r.run_id) for r in requests]
    assert scheduler.state.runs_requested == 2 and scheduler.state.last_trigger == "cron"


async def test_an_admin_request_naming_an_unknown_field_or_bad_type_is_refused_with_its_name() -> None:
    scheduler = Scheduler(SchedulePlan(), RequestDefaults(("payment-service",)), KeptPublisher(), TOPICS)
    with pytest.raises(ValueError, match="unknown fields: colour"):
        await scheduler.requested_over_http({"colour": "red"})
    with pytest.raises(ValueError, match="sync_type"):
        await scheduler.requested_over_http({"sync_type": "hourly"})
    answer = await scheduler.requested_over_http({"services": ["devlab-service"], "tenant_id": "acme"})
    [run] = answer["runs"]
    assert (run["service"], run["sync_type"]) == ("devlab-service", "batch")
