"""The embedder as a stage: typed item events in, points in the store, dead letters and counts out. No broker,
no model download: the in-memory store, a hashing encoder and a publisher that keeps what it is given."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import pytest

from ragsync.events import DeadLetter, EmbedProgress
from ragsync.messaging.delivery import Position, Unreadable
from ragsync.store import point_id
from ragsync.streams.embedder import (
    BATCH_FLOOR,
    BATCH_SECONDS,
    LAST_SLICE,
    WRITE_SLICE,
    BatchSize,
    Chunk,
    Embedder,
    Item,
    in_slices,
)
from tests.unit.doubles import TOPICS, EmbeddingStage, HashingEncoder, channel


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
    assert [outcome for _, outcome, _ in sorted(outcome.settled[("run-1", "acme", "payment-service")][0])] == [
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


async def test_two_tenants_items_whose_keys_read_alike_are_both_stored(stage: EmbeddingStage) -> None:
    first = stage.item("b/payment-service/c", "Refund for the course", tenant_id="a")
    second = stage.item("c", "Card declined at checkout", tenant_id="a/payment-service/b")
    assert first.event.key == second.event.key  # the Kafka key joins the parts: one partition, in order
    outcome = await stage.embedder.process([first, second], "member-a")
    assert stage.store.count(tenant_id="a") == 1 and stage.store.count(tenant_id="a/payment-service/b") == 1
    assert sorted(o for _, o, _ in outcome.settled[("run-1", "a", "payment-service")][0]) == ["upserted"]


async def test_an_unchanged_item_is_not_embedded_again_and_its_count_goes_on(stage: EmbeddingStage) -> None:
    await stage.embedder.process([stage.item("p-1", "Refund for the course")], "member-a")
    stage.encoder.encoded.clear()
    again = stage.item("p-1", "Refund for the course", run_id="run-1")
    outcome = await stage.embedder.process([again], "member-a")
    assert stage.encoder.encoded == []  # found unchanged: touched, not embedded
    assert outcome.settled[("run-1", "acme", "payment-service")][0] == [(1, "skipped", None)]
    run = stage.ledger.book.get("run-1")
    assert run is not None and (run.items_upserted, run.items_skipped) == (1, 1)


async def test_a_batch_larger_than_a_slice_stores_each_item_with_its_own_vector(stage: EmbeddingStage) -> None:
    count = 2 * WRITE_SLICE + 88  # slices of WRITE_SLICE, WRITE_SLICE, 24 and LAST_SLICE
    batch = [stage.item(f"p-{n}", f"payment {n} for course {n % 7}") for n in range(count)]
    await stage.embedder.process(batch, "member-a")

    assert stage.store.count() == count
    assert sorted(stage.encoder.encoded) == sorted(f"title: payment {n} for course {n % 7}" for n in range(count))
    ids = {point_id("acme", "payment-service", f"p-{n}"): n for n in (0, WRITE_SLICE - 1, WRITE_SLICE, count - 1)}
    stored = stage.store.points(list(ids), ["item_id"], vectors=True)
    for point, n in ids.items():
        expected = HashingEncoder.encode(stage.encoder, [f"title: payment {n} for course {n % 7}"])[0]
        assert stored[point].payload["item_id"] == f"p-{n}"
        assert stored[point].vector == pytest.approx(expected)


@pytest.mark.parametrize(
    ("count", "sizes"),
    [
        (1024, [WRITE_SLICE] * 3 + [WRITE_SLICE - LAST_SLICE, LAST_SLICE]),
        (2 * WRITE_SLICE + 88, [WRITE_SLICE, WRITE_SLICE, 88 - LAST_SLICE, LAST_SLICE]),
        (LAST_SLICE + 1, [1, LAST_SLICE]),
        (LAST_SLICE, [LAST_SLICE]),
        (3, [3]),
    ],
)
def test_a_batch_is_cut_into_slices_ending_with_a_small_one(count: int, sizes: list[int]) -> None:
    chunks = [Chunk(cast(Item, None), n, 1, str(n)) for n in range(count)]
    slices = in_slices(chunks)
    assert [len(part) for part in slices] == sizes
    assert [chunk for part in slices for chunk in part] == chunks  # every chunk once, in order


def test_batches_grow_to_what_a_fast_encoder_stores_in_a_second_and_no_further_than_the_cap() -> None:
    size = BatchSize(cap=4 * BATCH_FLOOR)
    assert size.next() == BATCH_FLOOR  # nothing measured yet
    size.observe(BATCH_FLOOR, BATCH_SECONDS / 3)  # 3 floors a second
    assert size.next() == 3 * BATCH_FLOOR
    size.observe(3 * BATCH_FLOOR, BATCH_SECONDS / 10)  # faster still: capped
    assert size.next() == 4 * BATCH_FLOOR
    size.observe(0, 0.0)  # an empty poll measures nothing
    assert size.next() == 4 * BATCH_FLOOR


def test_a_slow_model_keeps_batches_at_the_floor_and_a_small_cap_wins() -> None:
    slow = BatchSize(cap=4 * BATCH_FLOOR)
    slow.observe(BATCH_FLOOR, 5 * BATCH_SECONDS)  # 200 items a second, as all-MiniLM-L6-v2 on this CPU
    assert slow.next() == BATCH_FLOOR
    small = BatchSize(cap=16)
    small.observe(16, 0.001)
    assert small.next() == 16


class FailingOnSecondSlice(HashingEncoder):
    """Encodes the first slice of a batch, then fails: the model went away mid-batch."""

    async def encode_async(self, texts: list[str]) -> list[list[float]]:
        if self.encoded:
            await asyncio.sleep(0)  # the first slice's write is on its thread by now
            raise RuntimeError("model went away")
        return self.encode(texts)


async def test_a_slice_that_fails_leaves_no_write_running_and_the_retried_batch_stores_all(tmp_path: Path) -> None:
    async with EmbeddingStage(tmp_path) as stage:
        failing = FailingOnSecondSlice(tmp_path)
        embedder = Embedder(failing, stage.store, channel(stage.ledger, stage.publisher))
        count = WRITE_SLICE + LAST_SLICE + 10  # slices of WRITE_SLICE, 10, and LAST_SLICE
        batch = [stage.item(f"p-{n}", f"refund {n}") for n in range(count)]
        with pytest.raises(RuntimeError, match="model went away"):
            await embedder.process(batch, "member-a")
        assert stage.store.count() == WRITE_SLICE  # the first slice's write ended before the error came out
        assert stage.publisher.on(TOPICS.sync_runs) == []  # nothing counted: the batch is retried whole

        await stage.embedder.process(batch, "member-a")
        assert stage.store.count() == count
