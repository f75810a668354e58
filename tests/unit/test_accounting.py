"""The embedder's counts per run and items partition: exact under redelivery, without holding item ids."""

from ragsync.events import PartitionCounts
from ragsync.streams.embedder import account

BASE = PartitionCounts(next_offset=0)


def test_a_batch_adds_its_events_by_outcome_and_moves_the_offset_past_them() -> None:
    report = account(BASE, [(3, "upserted"), (5, "skipped"), (8, "dead_lettered"), (9, "deleted"), (4, "upserted")])
    assert (report.upserted, report.skipped, report.dead_lettered, report.deleted) == (2, 1, 1, 1)
    assert (report.next_offset, report.settled) == (10, 5)


def test_events_delivered_again_are_not_counted_twice() -> None:
    first = account(BASE, [(0, "upserted"), (1, "upserted"), (2, "upserted")])
    # After a rebalance the next owner gets offsets 1..4 again: only 3 and 4 are new.
    again = account(first, [(1, "skipped"), (2, "skipped"), (3, "upserted"), (4, "skipped")])
    assert (again.upserted, again.skipped, again.next_offset, again.settled) == (4, 1, 5, 5)


def test_a_batch_of_only_counted_events_changes_nothing() -> None:
    first = account(BASE, [(0, "upserted"), (1, "upserted")])
    assert account(first, [(0, "skipped"), (1, "skipped")]) is first
