from ragsync.events import RunProgress
from ragsync.runs import RunBook


def _event(**changes: object) -> RunProgress:
    base = {"run_id": "r1", "tenant_id": "t", "service": "s", "source": "fetcher"}
    return RunProgress.model_validate({**base, **changes})


def test_run_succeeds_only_when_every_fetched_item_is_settled() -> None:
    book = RunBook()
    book.apply(_event(status="fetching"))
    book.apply(_event(page=1, item_ids=[str(i) for i in range(9)], dead_lettered=1))
    run = book.apply(_event(status="fetched"))
    assert run.status == "embedding"
    run = book.apply(_event(source="embedder", item_ids=[str(i) for i in range(8)]))
    assert (run.status, run.items_pending) == ("embedding", 1)
    run = book.apply(_event(source="embedder", dead_item_ids=["8"]))
    assert run.status == "succeeded"
    assert (run.items_fetched, run.items_upserted, run.dead_lettered) == (9, 8, 2)


def test_embedder_events_before_the_page_event_keep_the_run_open() -> None:
    book = RunBook()
    run = book.apply(_event(source="embedder", item_ids=["a", "b"]))
    assert run.status == "fetching"
    book.apply(_event(page=1, item_ids=["a", "b"]))
    run = book.apply(_event(status="fetched"))
    assert run.status == "succeeded"


def test_failed_run_stays_failed_with_its_error() -> None:
    book = RunBook()
    book.apply(_event(page=1, item_ids=["a"]))
    run = book.apply(_event(status="failed", error="s page 2: UNAVAILABLE"))
    run = book.apply(_event(source="embedder", item_ids=["a"]))
    assert run.status == "failed" and run.error == "s page 2: UNAVAILABLE" and run.finished


def test_redelivered_upserts_count_once() -> None:
    book = RunBook()
    book.apply(_event(page=1, item_ids=["a", "b", "c"]))
    book.apply(_event(source="embedder", item_ids=["a", "b"]))
    run = book.apply(_event(source="embedder", item_ids=["a", "b"]))  # redelivered after a rebalance
    run = book.apply(_event(status="fetched"))
    assert (run.status, run.items_upserted, run.items_pending) == ("embedding", 2, 1)
    run = book.apply(_event(source="embedder", item_ids=["c"]))
    assert (run.status, run.items_fetched, run.items_upserted) == ("succeeded", 3, 3)


def test_a_page_emitted_twice_counts_once_and_sets_the_checkpoint() -> None:
    book = RunBook()
    book.apply(_event(page=1, item_ids=["a"]))
    book.apply(_event(page=2, item_ids=["b"]))
    run = book.apply(_event(page=2, item_ids=["b"]))
    assert (run.pages, run.last_page, run.items_fetched) == (2, 2, 2)


def test_the_same_id_on_two_pages_is_one_item() -> None:
    book = RunBook()
    book.apply(_event(page=1, item_ids=["a", "b"]))
    book.apply(_event(page=2, item_ids=["b"]))
    book.apply(_event(source="embedder", item_ids=["a", "b"]))
    run = book.apply(_event(status="fetched"))
    assert (run.status, run.items_fetched) == ("succeeded", 2)


def test_finished_run_keeps_counts_and_ignores_late_events() -> None:
    book = RunBook()
    book.apply(_event(page=1, item_ids=["a", "b"], dead_lettered=1))
    book.apply(_event(source="embedder", item_ids=["a"], dead_item_ids=["b"]))
    run = book.apply(_event(status="fetched"))
    assert run.status == "succeeded" and not run.fetched_ids and not run.upserted_ids
    run = book.apply(_event(source="embedder", item_ids=["x", "y"]))
    assert (run.items_fetched, run.items_upserted, run.dead_lettered, run.items_pending) == (2, 1, 2, 0)


def test_stall_notice_is_not_progress_and_progress_clears_it() -> None:
    from datetime import UTC, datetime, timedelta

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    book = RunBook()
    book.apply(_event(status="fetching", at=t0))
    run = book.apply(_event(source="watchdog", status="stalled", error="no progress", at=t0 + timedelta(seconds=60)))
    assert (run.status, run.stalls, run.last_progress_at) == ("stalled", 1, t0)
    assert run.idle_seconds(t0 + timedelta(seconds=70)) == 10
    run = book.apply(_event(page=1, item_ids=["a"], at=t0 + timedelta(seconds=80)))
    assert run.status == "fetching"


def test_skipped_request_is_final_with_its_reason() -> None:
    run = RunBook().apply(_event(status="skipped", error="run r0 of t/s is still active"))
    assert run.finished and run.status == "skipped" and "r0" in (run.error or "")


def test_queued_notice_after_fetcher_events_changes_nothing() -> None:
    book = RunBook()
    book.apply(_event(page=1, item_ids=["a"]))
    run = book.apply(_event(source="trigger", status="queued"))
    assert run.status == "fetching"


def test_skipped_and_deleted_items_settle_a_run() -> None:
    book = RunBook()
    book.apply(_event(page=1, item_ids=["a", "b", "c"], request={"service": "s", "sync_type": "batch"}))
    book.apply(_event(source="embedder", item_ids=["a"], skipped_ids=["b"], deleted_ids=["c"]))
    run = book.apply(_event(status="fetched"))
    assert (run.status, run.items_upserted, run.items_skipped, run.deleted) == ("succeeded", 1, 1, 1)


def test_a_succeeded_full_run_keeps_its_ids_until_pruned() -> None:
    book = RunBook()
    book.apply(_event(page=1, item_ids=["a", "b"], request={"service": "s", "sync_type": "batch"}))
    book.apply(_event(source="embedder", item_ids=["a", "b"]))
    run = book.apply(_event(status="fetched"))
    assert run.full and run.fetched_ids == {"a", "b"} and run.pruned is None
    run = book.apply(_event(source="embedder", pruned=4))
    assert run.pruned == 4 and run.deleted == 4 and not run.fetched_ids


def test_last_success_is_the_latest_succeeded_run_of_the_service() -> None:
    from datetime import UTC, datetime

    book = RunBook()
    for run_id, day in (("r1", 1), ("r2", 2)):
        book.apply(_event(run_id=run_id, page=1, item_ids=[], at=datetime(2026, 1, day, tzinfo=UTC)))
        book.apply(_event(run_id=run_id, status="fetched", at=datetime(2026, 1, day, tzinfo=UTC)))
    book.apply(_event(run_id="r3", status="failed", error="x", at=datetime(2026, 1, 3, tzinfo=UTC)))
    last = book.last_success("t", "s")
    assert last is not None and last.run_id == "r2"
    assert book.last_success("t", "other") is None
