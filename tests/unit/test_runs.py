"""Folding the keyed run-state records into runs: status, counts, finals, cursors, expiry, keys."""

from datetime import UTC, datetime, timedelta

import pytest

from ragsync.events import (
    STATE_RECORD,
    Cursor,
    EmbedProgress,
    FetchProgress,
    PartitionCounts,
    RunEnded,
    RunMark,
    RunPruned,
    RunQueued,
    SyncRequest,
    WatchdogNotice,
)
from ragsync.keys import cursor_key, parse_key, run_key
from ragsync.runstate.runs import RunBook

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
RUN = {"run_id": "r1", "tenant_id": "t", "service": "s"}
REQUEST = SyncRequest(run_id="r1", tenant_id="t", service="s", sync_type="batch")


def _fetch(seconds: float = 1, **changes: object) -> FetchProgress:
    fields = {"request": REQUEST, "status": "fetching", "started_at": T0, "at": T0 + timedelta(seconds=seconds)}
    return FetchProgress(**RUN, **{**fields, **changes})


def _embed(partition: int, next_offset: int, seconds: float = 2, member: str = "m1", **counts: int) -> EmbedProgress:
    """Member `member`'s record after counting `partition` up to `next_offset` (and no other partition)."""
    at = T0 + timedelta(seconds=seconds)
    counted = {partition: PartitionCounts(next_offset=next_offset, **counts)}
    return EmbedProgress(**RUN, member=member, partitions=counted, at=at)


def test_a_run_goes_from_queued_to_fetching_to_embedding_and_counts_across_partitions() -> None:
    book = RunBook()
    run = book.apply(RunQueued(**RUN, request=REQUEST, at=T0))
    assert run is not None and run.request == REQUEST
    statuses = [run.status]
    book.apply(_fetch(pages=1, produced=9, dead_lettered=1, marks={0: 4, 1: 7}))
    statuses.append(run.status)
    book.apply(_embed(0, 5, upserted=3, skipped=1))
    book.apply(_embed(1, 8, member="m2", upserted=2, dead_lettered=1))
    book.apply(_fetch(seconds=3, status="fetched", pages=1, produced=9, dead_lettered=1, marks={0: 4, 1: 7}))
    statuses.append(run.status)
    assert statuses == ["queued", "fetching", "embedding"]
    assert (run.items_fetched, run.items_upserted, run.items_skipped, run.dead_lettered) == (9, 5, 1, 2)
    assert (run.items_settled, run.items_pending, run.last_page) == (7, 2, 1)
    assert not run.settled_by_count
    book.apply(_embed(1, 9, member="m2", upserted=4, dead_lettered=1))
    assert run.items_pending == 0 and run.settled_by_count and not run.finished
    book.apply(RunEnded(**RUN, at=T0 + timedelta(seconds=4)))
    assert (run.status, run.finished_at, run.seconds) == ("succeeded", T0 + timedelta(seconds=4), 3.0)
    assert not run.settled_by_count


def test_each_partition_counts_from_the_member_that_reported_it_furthest() -> None:
    book = RunBook()
    book.apply(_embed(0, 10, member="new-owner", upserted=10))
    run = book.apply(_embed(0, 6, member="old-owner", upserted=6))  # lost the partition, wrote late
    assert run is not None and (run.items_upserted, run.partition_counts()[0].next_offset) == (10, 10)
    run = book.apply(_embed(0, 12, member="old-owner", upserted=12))  # got it back and went on from 10
    assert run is not None and run.items_upserted == 12
    assert run.parts == [("embed", "new-owner"), ("embed", "old-owner")]


def test_the_earliest_final_record_decides_whatever_the_order_of_keys() -> None:
    failed = WatchdogNotice(**RUN, status="failed", stalls=3, error="stalled: gave up", at=T0 + timedelta(seconds=5))
    ended = RunEnded(**RUN, at=T0 + timedelta(seconds=9))
    for order in ([failed, ended], [ended, failed]):
        book = RunBook()
        book.apply(_fetch(status="fetched"))
        for record in order:
            book.apply(record)
        run = book.get("r1")
        assert run is not None and (run.status, run.error, run.stalls) == ("failed", "stalled: gave up", 3)


def test_a_failed_or_skipped_fetch_is_final_with_its_error() -> None:
    book = RunBook()
    run = book.apply(_fetch(status="failed", error="s page 2: UNAVAILABLE"))
    assert run is not None and (run.status, run.error, run.finished) == ("failed", "s page 2: UNAVAILABLE", True)
    run = book.apply(_embed(0, 3, seconds=9, upserted=3))
    assert run is not None and run.status == "failed"
    skipped = RunBook().apply(_fetch(status="skipped", error="run r0 of t/s is still active"))
    assert skipped is not None and (skipped.status, skipped.error) == ("skipped", "run r0 of t/s is still active")


def test_a_stall_notice_holds_until_the_next_progress() -> None:
    book = RunBook()
    book.apply(_fetch(pages=2))
    notice = WatchdogNotice(**RUN, status="stalled", stalls=1, error="no progress", at=T0 + timedelta(seconds=60))
    run = book.apply(notice)
    assert run is not None and (run.status, run.error, run.stalls) == ("stalled", "no progress", 1)
    assert run.idle_seconds(T0 + timedelta(seconds=70)) == 10
    run = book.apply(_fetch(seconds=61, pages=3))
    assert run is not None and (run.status, run.error, run.stalls, run.last_page) == ("fetching", None, 1, 3)


def test_cursors_keep_the_last_success_and_the_last_full_one() -> None:
    book = RunBook()
    full = RunMark(run_id="r1", sync_type="batch", started_at=T0, finished_at=T0 + timedelta(minutes=1))
    incremental = RunMark(run_id="r2", sync_type="incremental", started_at=T0 + timedelta(hours=1), finished_at=T0)
    assert book.apply(Cursor(tenant_id="t", service="s", last_success=incremental, last_full=full)) is None
    assert book.last_success("t", "s") == incremental
    assert book.last_success("t", "s", full=True) == full
    assert book.last_success("t", "other") is None


def test_expired_runs_are_old_or_past_the_newest_per_service_and_never_active() -> None:
    book = RunBook()
    for n in range(5):
        run_id, at = f"r{n}", T0 + timedelta(days=n)
        request = REQUEST.model_copy(update={"run_id": run_id})
        book.apply(RunQueued(run_id=run_id, tenant_id="t", service="s", request=request, at=at))
        if n != 0:  # r0 never finished: it is active, so it stays however old
            book.apply(RunEnded(run_id=run_id, tenant_id="t", service="s", at=at + timedelta(hours=1)))
    book.apply(RunQueued(run_id="other", tenant_id="t", service="s2", request=REQUEST, at=T0))
    book.apply(RunEnded(run_id="other", tenant_id="t", service="s2", at=T0))
    by_age = book.expired(before=T0 + timedelta(days=2), keep_per_service=100)
    assert sorted(r.run_id for r in by_age) == ["other", "r1"]
    by_count = book.expired(before=T0 - timedelta(days=1), keep_per_service=2)
    assert sorted(r.run_id for r in by_count) == ["r1", "r2"]


def test_a_run_lists_every_key_it_has_for_its_tombstones() -> None:
    book = RunBook()
    book.apply(RunQueued(**RUN, request=REQUEST, at=T0))
    book.apply(_fetch(status="fetched"))
    book.apply(_embed(3, 1, member="m2", upserted=1))
    book.apply(_embed(0, 1, upserted=1))
    run = book.apply(RunPruned(**RUN, pruned=2))
    assert run is not None and run.parts == [
        ("queued", None),
        ("fetch", None),
        ("pruned", None),
        ("embed", "m1"),
        ("embed", "m2"),
    ]
    assert (run.pruned, run.swept, run.deleted) == (2, 2, 0)
    book.forget("r1")
    assert book.get("r1") is None


@pytest.mark.parametrize("tenant", ["t", "acme/eu", "a b%c"])
def test_keys_round_trip_whatever_the_names_hold(tenant: str) -> None:
    parsed = parse_key(run_key(tenant, "svc", "run/1", "embed", "host/7").encode())
    assert parsed is not None
    assert (parsed.tenant_id, parsed.service, parsed.run_id, parsed.part, parsed.member) == (
        tenant,
        "svc",
        "run/1",
        "embed",
        "host/7",
    )
    cursor = parse_key(cursor_key(tenant, "svc"))
    assert cursor is not None and (cursor.tenant_id, cursor.run_id) == (tenant, None)


def test_an_older_versions_key_is_not_a_state_key() -> None:
    assert parse_key(b"4f1c0a") is None
    assert parse_key(None) is None
    assert parse_key("run/t/s/r/embed") is None
    assert parse_key("run/t/s/r/fetch/x") is None


def test_every_record_decodes_by_its_kind_and_carries_its_key() -> None:
    records = [
        RunQueued(**RUN, request=REQUEST),
        _fetch(),
        _embed(2, 5),
        WatchdogNotice(**RUN, status="stalled", error="e"),
        RunEnded(**RUN),
        RunPruned(**RUN, pruned=0),
    ]
    for record in records:
        assert STATE_RECORD.validate_json(record.to_bytes()) == record
        parsed = parse_key(record.key)
        assert parsed is not None and (parsed.run_id, parsed.part) == ("r1", record.kind)
