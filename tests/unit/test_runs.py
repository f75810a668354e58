from ragsync.events import RunProgress
from ragsync.runs import RunBook


def _event(**changes: object) -> RunProgress:
    base = {"run_id": "r1", "tenant_id": "t", "service": "s", "source": "fetcher"}
    return RunProgress.model_validate({**base, **changes})


def test_run_succeeds_only_when_every_fetched_item_is_settled() -> None:
    book = RunBook()
    book.apply(_event(status="fetching"))
    book.apply(_event(pages=1, items_fetched=10, dead_lettered=1))
    run = book.apply(_event(status="fetched"))
    assert run.status == "embedding"
    run = book.apply(_event(source="embedder", items_upserted=9))
    assert run.status == "embedding"
    run = book.apply(_event(source="embedder", dead_lettered=1))
    assert run.status == "succeeded"
    assert (run.items_fetched, run.items_upserted, run.dead_lettered) == (10, 9, 2)


def test_embedder_events_before_fetch_finished_keep_run_open() -> None:
    book = RunBook()
    run = book.apply(_event(source="embedder", items_upserted=5))
    assert run.status == "embedding"
    book.apply(_event(pages=1, items_fetched=5))
    run = book.apply(_event(status="fetched"))
    assert run.status == "succeeded"


def test_failed_run_stays_failed_with_its_error() -> None:
    book = RunBook()
    book.apply(_event(pages=1, items_fetched=3))
    run = book.apply(_event(status="failed", error="s page 2: UNAVAILABLE"))
    run = book.apply(_event(source="embedder", items_upserted=3))
    assert run.status == "failed" and run.error == "s page 2: UNAVAILABLE" and run.finished
