"""The embedder's counts per run and items partition: exact under redelivery, without holding item ids."""

from ragsync.events import MAX_TENANTS_COUNTED, OTHER_TENANTS, PartitionCounts, TenantCounts
from ragsync.streams.embedder import account

BASE = PartitionCounts(next_offset=0)


def test_a_batch_adds_its_events_by_outcome_and_moves_the_offset_past_them() -> None:
    report = account(
        BASE,
        [
            (3, "upserted", None),
            (5, "skipped", None),
            (8, "dead_lettered", None),
            (9, "deleted", None),
            (4, "upserted", None),
        ],
    )
    assert (report.upserted, report.skipped, report.dead_lettered, report.deleted) == (2, 1, 1, 1)
    assert (report.next_offset, report.settled) == (10, 5)


def test_events_delivered_again_are_not_counted_twice() -> None:
    first = account(BASE, [(0, "upserted", None), (1, "upserted", None), (2, "upserted", None)])
    # After a rebalance the next owner gets offsets 1..4 again: only 3 and 4 are new.
    again = account(first, [(1, "skipped", None), (2, "skipped", None), (3, "upserted", None), (4, "skipped", None)])
    assert (again.upserted, again.skipped, again.next_offset, again.settled) == (4, 1, 5, 5)


def test_a_batch_of_only_counted_events_changes_nothing() -> None:
    first = account(BASE, [(0, "upserted", None), (1, "upserted", None)])
    assert account(first, [(0, "skipped", None), (1, "skipped", None)]) is first


def test_records_naming_their_own_tenants_are_counted_per_tenant_exactly_and_boundedly() -> None:
    first = account(BASE, [(0, "upserted", "acme"), (1, "upserted", "globex"), (2, "upserted", None)])
    again = account(first, [(1, "skipped", "globex"), (3, "deleted", "globex"), (4, "dead_lettered", "acme")])
    assert (again.upserted, again.deleted, again.dead_lettered, again.settled) == (3, 1, 1, 5)
    assert again.tenants == {
        "acme": TenantCounts(upserted=1, dead_lettered=1),
        "globex": TenantCounts(upserted=1, deleted=1),
    }
    many = account(BASE, [(n, "upserted", f"t{n}") for n in range(MAX_TENANTS_COUNTED + 5)])
    assert len(many.tenants) == MAX_TENANTS_COUNTED + 1 and many.tenants[OTHER_TENANTS].upserted == 5
    assert sum(t.upserted for t in many.tenants.values()) == many.upserted
