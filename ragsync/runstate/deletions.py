"""The deletion budget: what a run may delete without a person, and the held deletions a person confirms.

An upstream that answers wrongly (an empty full answer, paging cut short, every record flagged deleted) looks
to a sweep exactly like records gone upstream. So before a run deletes anything, its deletions are counted by
filter (never listed), and a run that would remove more than RUN_MAX_DELETE_SHARE of its tenant's points of the
service is held: it ends failed, nothing is deleted, and `ragsync prune RUN --confirm` carries the deletion out.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ragsync.errors import Refused, SetupError
from ragsync.events import MAX_TENANTS_COUNTED, OTHER_TENANTS, Deletion, DeletionConfirmed
from ragsync.runstate.channel import RunChannel
from ragsync.runstate.runs import RunState
from ragsync.store.base import DeletionScope, VectorStore

CONFIRM = "ragsync prune {run_id} --confirm"
HTTP_CONFIRM_WAIT_S = 30.0  # the pruner runs in the same process as the endpoint: most deletions end well within


@dataclass(frozen=True, kw_only=True)
class DeletionBudget:
    """RUN_MAX_DELETE_SHARE and RUN_MIN_DELETE_HOLD."""

    max_share: float = 0.3
    min_hold: int = 100

    def holds(self, deletion: Deletion, empty_full_answer: bool) -> bool:
        """Whether a deletion waits for a person: over the share (and not under the floor), any deletion with a
        share of 0, never with a share of 1. An empty answer to a full sync that would delete is always held
        while the guard is on: it is the outage that most often looks like success."""
        if self.max_share >= 1 or deletion.total == 0:
            return False
        if self.max_share == 0 or empty_full_answer:
            return True
        return deletion.total >= self.min_hold and deletion.share > self.max_share


def scope_of(run: RunState) -> DeletionScope:
    """Whose points the run's deletions touch, and which."""
    assert run.started_at is not None  # a run that ended was fetched
    return DeletionScope(
        run_id=run.run_id,
        tenant_id=run.tenant_id,
        service=run.service,
        full=run.full,
        before=run.started_at.timestamp(),
        all_tenants=run.all_tenants,
    )


def held_error(run: RunState, deletions: dict[str, Deletion], budget: DeletionBudget) -> str | None:
    """Why the run's deletions are held, saying everything a person needs; None when they may go ahead. Judged per
    tenant: one tenant over the budget holds the whole run, and the error names it (the largest share held)."""
    empty = run.full and run.items_fetched == 0 and (run.fetch.dead_lettered if run.fetch else 0) == 0
    held = {tenant: d for tenant, d in deletions.items() if budget.holds(d, empty)}
    if not held:
        return None
    tenant, deletion = max(held.items(), key=lambda pair: (pair[1].share, pair[1].total))
    others = f"; {len(held) - 1} other tenants held too" if len(held) > 1 else ""
    kind = "full run" if run.full else "run"
    over = ">" if deletion.share > budget.max_share else "<="
    why = f"{deletion.share:.0%} {over} RUN_MAX_DELETE_SHARE {budget.max_share:.0%}"
    why += ", an empty answer to a full sync" if empty else ""
    answered = f"; the Coordinator answered {run.pages} pages, {run.items_fetched} records"
    last = f", the last {run.fetch.last_page}" if run.fetch and run.fetch.last_page else ""
    return (
        f"held: this {kind} would remove {deletion.total} of the {deletion.points} points of "
        f"{run.service}/{tenant} ({why}; {deletion.swept} it did not see, {deletion.deleted} of records "
        f"flagged deleted{others}); nothing was deleted{answered}{last}; if those records really went away upstream, "
        f"run {CONFIRM.format(run_id=run.run_id)}"
    )


class DeletionGuard:
    """Counts a run's deletions in the store and judges them against the budget, before anything is deleted."""

    def __init__(self, store: VectorStore, budget: DeletionBudget) -> None:
        self._store = store
        self.budget = budget

    async def check(self, run: RunState) -> tuple[Deletion, str | None]:
        """What the run's deletions would remove (all tenants together), and why they are held (None: they may
        go ahead)."""
        if not (run.full or run.deleted):
            return Deletion(), None  # an incremental run without records flagged deleted deletes nothing
        deletions = await asyncio.to_thread(self._store.deletion, scope_of(run))
        return total(deletions), held_error(run, deletions, self.budget)


def total(deletions: dict[str, Deletion]) -> Deletion:
    """Every tenant's deletion together."""
    return sum(deletions.values(), Deletion())


def by_tenant(run: RunState, deletions: dict[str, Deletion]) -> dict[str, Deletion]:
    """What a run whose records name their own tenants removed per tenant, for its record: MAX_TENANTS_COUNTED
    tenants by name at most (the largest), the rest together under OTHER_TENANTS; empty for any other run."""
    if not run.all_tenants:
        return {}
    ranked = sorted(deletions.items(), key=lambda pair: pair[1].total, reverse=True)
    named = dict(ranked[:MAX_TENANTS_COUNTED])
    rest = [deletion for _, deletion in ranked[MAX_TENANTS_COUNTED:]]
    return named | ({OTHER_TENANTS: sum(rest, Deletion())} if rest else {})


def refusal(run: RunState) -> str | None:
    """Why a person's confirmation of `run` is refused, in one line; None when its held deletion may go ahead."""
    name = f"{run.run_id} ({run.service}/{run.tenant_id})"
    if run.end is None or run.end.held is None:
        return f"run {name} holds no deletion (it is {run.status}); nothing to confirm"
    if run.prune is not None:
        return f"run {name}: its held deletion was confirmed and carried out already"
    newer = run.superseded
    if newer is not None:
        return (
            f"run {name}: a newer full run ({newer.run_id}) of {run.service}/{run.tenant_id} finished since and "
            f"decided its deletions afresh; nothing was deleted. Sync again if points should still go"
        )
    return None


class AdminPrune(BaseModel):
    """The body of `POST /admin/prune`: the held run (its id, or the first characters of it), and `confirm`, which
    must be true: deleting is never a default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str = Field(min_length=1, max_length=200)
    confirm: Literal[True]


class PruneConfirmations:
    """A person's confirmations of held deletions, against the run-state topic: checked, recorded, and waited
    for until an embedder's pruner carried them out."""

    def __init__(self, channel: RunChannel) -> None:
        self._channel = channel

    def held_run(self, prefix: str, where: str) -> RunState:
        """The one kept run whose id starts with `prefix`, if its held deletion may be confirmed; else `Refused`
        saying why."""
        book = self._channel.book
        runs = book.starting_with(prefix)
        if not runs:
            raise Refused(f"no run {prefix} on {where}: `ragsync status` lists the kept runs")
        if len(runs) > 1:
            raise Refused(f"{len(runs)} runs start with {prefix}: give more of the id")
        problem = refusal(runs[0])
        if problem is not None:
            raise Refused(problem)
        return runs[0]

    async def confirm(self, run: RunState, by: str, timeout: float) -> RunState | None:
        """Record a person's confirmation of `run`'s held deletion, and wait until an embedder's pruner carried it
        out; the run then, or None when none did within `timeout` (the confirmation stays: it is carried out when
        an embedder runs). `held_run` checks first."""
        record = DeletionConfirmed(run_id=run.run_id, tenant_id=run.tenant_id, service=run.service, by=by)
        await self._channel.report(record)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            latest = self._channel.book.get(run.run_id)
            if latest is not None and latest.prune is not None:
                return latest
            await asyncio.sleep(0.1)
        return None

    async def over_http(self, body: bytes) -> dict[str, Any]:
        """`POST /admin/prune`: an `AdminPrune` body; pydantic's `ValidationError` for anything else."""
        order = AdminPrune.model_validate_json(body.decode("utf-8", errors="replace").strip() or "{}")
        run = self.held_run(order.run_id, "the run-state topic")
        done = await self.confirm(run, "http", HTTP_CONFIRM_WAIT_S)
        return carried_out(run if done is None else done)


def carried_out(run: RunState) -> dict[str, Any]:
    """What a confirmation did, as JSON: the run, and whether its deletion was carried out with its counts."""
    held = run.end.held if run.end is not None else None
    removed = Deletion(swept=run.prune.pruned, deleted=run.prune.deleted) if run.prune else None
    return _outcome(run.run_id, run.tenant_id, run.service, held, removed)


def _outcome(
    run_id: str, tenant_id: str, service: str, held: Deletion | None, removed: Deletion | None
) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "tenant_id": tenant_id,
        "service": service,
        "held": held.model_dump() if held else None,
        "carried_out": removed is not None,
        "swept": removed.swept if removed else 0,
        "deleted": removed.deleted if removed else 0,
    }


@dataclass(frozen=True, kw_only=True)
class HeldRun:
    """A held deletion as the one-shot commands keep it, without a run-state topic to read it from."""

    scope: DeletionScope
    held: Deletion
    finished_at: datetime

    def as_json(self) -> dict[str, Any]:
        """The file's form."""
        scope = self.scope
        return {
            "run_id": scope.run_id,
            "tenant_id": scope.tenant_id,
            "service": scope.service,
            "full": scope.full,
            "before": scope.before,
            "all_tenants": scope.all_tenants,
            "held": self.held.model_dump(),
            "finished_at": self.finished_at.isoformat(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HeldRun:
        """Read back `as_json`."""
        scope = DeletionScope(
            run_id=data["run_id"],
            tenant_id=data["tenant_id"],
            service=data["service"],
            full=bool(data["full"]),
            before=float(data["before"]),
            all_tenants=bool(data.get("all_tenants", False)),
        )
        return cls(
            scope=scope,
            held=Deletion.model_validate(data["held"]),
            finished_at=datetime.fromisoformat(data["finished_at"]),
        )


class HeldFile:
    """The held deletions of one-shot syncs (`sync`, `demo` on their own broker, whose run state goes with the
    command), under DATA_DIR: the newest held run per tenant and service, dropped once a later full run of them
    succeeded or the hold was confirmed. Bounded by the number of tenants and services, not by runs."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def runs(self) -> list[HeldRun]:
        """The held runs kept."""
        if not self.path.exists():
            return []
        try:
            return [HeldRun.from_json(entry) for entry in json.loads(self.path.read_text())]
        except (ValueError, KeyError, TypeError) as error:  # not the file `_write` wrote: damaged, or edited
            raise SetupError(
                f"{self.path} is not the held deletions this command keeps ({type(error).__name__}: {error}); move "
                "it aside and sync the services again: a run that would still delete too much is held again"
            ) from error

    def starting_with(self, prefix: str) -> list[HeldRun]:
        """The kept held runs whose id starts with `prefix`."""
        return [held for held in self.runs() if held.scope.run_id.startswith(prefix)]

    def record(self, runs: list[RunState]) -> None:
        """Keep the held ones of `runs`; drop the holds of tenants and services whose full run succeeded."""
        kept = {(h.scope.tenant_id, h.scope.service): h for h in self.runs()}
        for run in runs:
            slot = (run.tenant_id, run.service)
            if run.held is not None and run.finished_at is not None:
                kept[slot] = HeldRun(scope=scope_of(run), held=run.held, finished_at=run.finished_at)
            elif run.status == "succeeded" and run.full:
                kept.pop(slot, None)
        self._write(list(kept.values()))

    def drop(self, run_id: str) -> None:
        """Forget a held run (its deletion was carried out)."""
        self._write([held for held in self.runs() if held.scope.run_id != run_id])

    def _write(self, runs: list[HeldRun]) -> None:
        if not runs and not self.path.exists():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        aside = self.path.with_suffix(".tmp")
        aside.write_text(json.dumps([held.as_json() for held in runs], indent=1))
        os.replace(aside, self.path)  # a crash leaves the old file or the new one, never half of one


HELD_FILE = "held-deletions.json"


def confirm_here(store: VectorStore, held: HeldFile, prefix: str) -> dict[str, Any]:
    """Carry out the held deletion of a one-shot sync's run whose id starts with `prefix`, in this process's
    store; what it did (as `carried_out`), or `Refused` saying why not."""
    matches = held.starting_with(prefix)
    if not matches:
        raise Refused(
            f"no held deletion of run {prefix} in {held.path}: it was carried out, or a newer full run of its "
            "service succeeded since and decided its deletions afresh; sync again if points should still go"
        )
    if len(matches) > 1:
        raise Refused(f"{len(matches)} held runs start with {prefix}: give more of the id")
    run = matches[0]
    if not store.write_to_live():
        raise Refused(f"no collection {store.collection} in the store: nothing to delete")
    removed = total(store.remove(run.scope))
    held.drop(run.scope.run_id)
    return _outcome(run.scope.run_id, run.scope.tenant_id, run.scope.service, run.held, removed)
