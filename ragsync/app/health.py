"""The readiness checks and status pages more than one component serves: the broker through the ledger, the
store, the store's disk, and the runs."""

from __future__ import annotations

import asyncio
from typing import Any

from ragsync.operations.endpoints import Check
from ragsync.runstate.ledger import RunLedger
from ragsync.store import VectorStore
from ragsync.store.space import StoreSpace


def ledger_check(ledger: RunLedger) -> Check:
    """Ready once the broker answered the ledger."""

    async def check() -> str | None:
        lag = await ledger.lag()
        return "no answer from the broker yet" if lag is None else None

    return check


def store_check(store: VectorStore) -> Check:
    """The readiness check of a store: what keeps it from answering, or None."""

    async def check() -> str | None:
        if store.busy:  # its calls wait meanwhile, so asking it would hang the check
            return f"{store.busy}; writes and searches wait until it ends"
        await asyncio.to_thread(store.count)
        return None

    return check


def space_check(space: StoreSpace | None) -> Check:
    """Ready while the embedded store's disk has room (always, when it is not watched)."""

    async def check() -> str | None:
        return None if space is None else space.shortage()

    return check


def runs_status(ledger: RunLedger) -> dict[str, Any]:
    """The runs on /status: how many are active, the held ones, and the recent ones."""
    return {
        "active_runs": len(ledger.book.active()),
        "held_runs": held_runs(ledger),
        "runs": [r.summary() for r in ledger.book.recent()],
    }


def held_runs(ledger: RunLedger) -> list[dict[str, Any]]:
    """The runs whose deletions wait for a person (`ragsync prune RUN --confirm`)."""
    return [run.summary() for run in ledger.book.held()]
