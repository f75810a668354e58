"""The embedder as a stage: typed item events in, points in the store, dead letters and counts out. No broker,
no model download: the in-memory store, a hashing encoder and a publisher that keeps what it is given."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ragsync.delivery import Position, Unreadable
from ragsync.events import DeadLetter, EmbedProgress
from tests.unit.doubles import TOPICS, EmbeddingStage


@pytest.fixture
async def stage(tmp_path: Path) -> AsyncIterator[EmbeddingStage]:
    async with EmbeddingStage(tmp_path) as made:
        yield made


async def test_a_batch_is_stored_and_every_event_counted_once(stage: EmbeddingStage) -> None:
    batch = [
        stage.item("p-1", "Refund for the course"),
        stage.item("p-2", "Card declined at checkout"),
        stage.item("p-1", "Refund for the course, approved"),  # supersedes the first p-1 in this batch
        stage.item("p-3", None),  # no text
        stage.item("p-4", None, op="delete"),
    ]
    unreadable = [Unreadable(Position(TOPICS.items, 0, 99), "run_id: Field required", '{"x": 1}')]
    outcome = await stage.embedder.process(batch, "member-a", unreadable)

    assert stage.store.count() == 2
    embedded = ["title: Refund for the course, approved", "title: Card declined at checkout"]
    assert sorted(stage.encoder.encoded) == sorted(embedded)
    assert [outcome for _, outcome in sorted(outcome.settled[("run-1", "acme", "payment-service")][0])] == [
        "skipped",
        "upserted",
        "upserted",
        "dead_lettered",
        "deleted",
    ]
    letters = stage.publisher.on(TOPICS.dead_letters)
    assert all(isinstance(letter, DeadLetter) for letter in letters)
    reasons = sorted(letter.reason for letter in letters)
    assert reasons == ["run_id: Field required", "the record has no text to embed (every field is empty or an id)"]
    [report] = stage.publisher.on(TOPICS.sync_runs)
    assert isinstance(report, EmbedProgress) and report.member == "member-a"
    counts = report.partitions[0]
    assert (counts.upserted, counts.skipped, counts.deleted, counts.dead_lettered, counts.next_offset) == (
        2,
        1,
        1,
        1,
        5,
    )


async def test_an_unchanged_item_is_not_embedded_again_and_its_count_goes_on(stage: EmbeddingStage) -> None:
    await stage.embedder.process([stage.item("p-1", "Refund for the course")], "member-a")
    stage.encoder.encoded.clear()
    again = stage.item("p-1", "Refund for the course", run_id="run-1")
    outcome = await stage.embedder.process([again], "member-a")
    assert stage.encoder.encoded == []  # found unchanged: touched, not embedded
    assert outcome.settled[("run-1", "acme", "payment-service")][0] == [(1, "skipped")]
    run = stage.ledger.book.get("run-1")
    assert run is not None and (run.items_upserted, run.items_skipped) == (1, 1)
