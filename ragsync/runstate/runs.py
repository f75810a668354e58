"""Sync runs, folded from the keyed records of the run-state topic: status, counts, checkpoint, cursors.

A run is the latest record of each of its parts (see `ragsync.keys`), so folding is idempotent and
independent of the order of different keys: a repeated record changes nothing. Nothing here grows with a run's
items: a run holds one record per part, and one per items-topic partition for the embedder's counts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from ragsync.events import (
    Cursor,
    Deletion,
    DeletionConfirmed,
    EmbedProgress,
    FetchProgress,
    PartitionCounts,
    RunEnded,
    RunMark,
    RunPruned,
    RunQueued,
    RunRecord,
    SyncRequest,
    TenantCounts,
    WatchdogNotice,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
RunStatusName = Literal[
    "queued", "fetching", "embedding", "succeeded", "failed", "held", "superseded", "stalled", "skipped"
]


@dataclass(frozen=True)
class Final:
    """How a run ended."""

    status: RunStatusName
    at: datetime
    error: str | None = None


@dataclass
class RunState:
    """Everything known about one run: the latest record of each part."""

    run_id: str
    tenant_id: str
    service: str
    queued: RunQueued | None = None
    fetch: FetchProgress | None = None
    embeds: dict[str, EmbedProgress] = field(default_factory=dict)  # by member
    watchdog: WatchdogNotice | None = None
    end: RunEnded | None = None
    confirm: DeletionConfirmed | None = None
    prune: RunPruned | None = None
    # The newer full run of the same tenant and service that succeeded after this held run ended (kept by the
    # book, which knows the cursors): its deletion can no longer be confirmed, so the run no longer waits.
    superseded: RunMark | None = None
    # The merged partition counts, folded once per embedder record rather than once per count read: a summary
    # reads six of them, for every kept run on each `/status` and scrape.
    _merged: dict[int, PartitionCounts] | None = field(default=None, repr=False, compare=False)

    def apply(self, record: RunRecord) -> None:
        """Fold one record: it replaces the part it is the latest of."""
        if isinstance(record, RunQueued):
            self.queued = record
        elif isinstance(record, FetchProgress):
            self.fetch = record
        elif isinstance(record, EmbedProgress):
            self.embeds[record.member] = record
            self._merged = None
        elif isinstance(record, WatchdogNotice):
            self.watchdog = record
        elif isinstance(record, RunEnded):
            self.end = record
        elif isinstance(record, DeletionConfirmed):
            self.confirm = record
        elif isinstance(record, RunPruned):
            self.prune = record

    @property
    def parts(self) -> list[tuple[str, str | None]]:
        """The (part, member) of every key this run has records under (what a tombstone must cover)."""
        named = [
            (name, None)
            for name, value in (
                ("queued", self.queued),
                ("fetch", self.fetch),
                ("watchdog", self.watchdog),
                ("end", self.end),
                ("confirm", self.confirm),
                ("pruned", self.prune),
            )
            if value is not None
        ]
        return named + [("embed", member) for member in sorted(self.embeds)]

    # --- what the run asked for ---
    @property
    def request(self) -> SyncRequest | None:
        """The run's request, from the fetcher or the trigger."""
        if self.fetch is not None:
            return self.fetch.request
        return self.queued.request if self.queued is not None else None

    @property
    def all_tenants(self) -> bool:
        """Whether the run fetched the whole service, whose records name their own tenants: its deletions cover
        every tenant of the service."""
        return self.fetch is not None and self.fetch.all_tenants

    @property
    def full(self) -> bool:
        """Whether this is a full sync (batch or daily), whose end may delete what it did not see."""
        return self.request is not None and self.request.sync_type in ("batch", "daily")

    # --- counts ---
    @property
    def pages(self) -> int:
        """Pages completed."""
        return self.fetch.pages if self.fetch else 0

    @property
    def last_page(self) -> int:
        """The checkpoint: the last page completed (0 before the first). Pages complete in order."""
        return self.pages

    @property
    def items_fetched(self) -> int:
        """Item events the fetcher produced."""
        return self.fetch.produced if self.fetch else 0

    @property
    def items_upserted(self) -> int:
        """Items embedded and written to Qdrant."""
        return sum(c.upserted for c in self.partition_counts().values())

    @property
    def items_skipped(self) -> int:
        """Items unchanged since they were stored: not embedded again."""
        return sum(c.skipped for c in self.partition_counts().values())

    @property
    def embed_dead_lettered(self) -> int:
        """Items the embedder dead-lettered."""
        return sum(c.dead_lettered for c in self.partition_counts().values())

    @property
    def dead_lettered(self) -> int:
        """Items dead-lettered by any stage."""
        return (self.fetch.dead_lettered if self.fetch else 0) + self.embed_dead_lettered

    @property
    def pruned(self) -> int | None:
        """Points the sweep deleted after the run because it did not see them; None until its deletions ran."""
        return self.prune.pruned if self.prune else None

    @property
    def swept(self) -> int:
        """Points the sweep deleted (0 until the run's deletions ran)."""
        return self.pruned or 0

    @property
    def deleted(self) -> int:
        """Items whose record said they were deleted upstream (their points go with the run's deletions)."""
        return sum(c.deleted for c in self.partition_counts().values())

    @property
    def held(self) -> Deletion | None:
        """What the run's deletions would remove, while they are held (over RUN_MAX_DELETE_SHARE, not confirmed
        and carried out yet)."""
        return self.end.held if self.end is not None and self.prune is None else None

    @property
    def deletion_pending(self) -> bool:
        """Whether the run's deletions are still to be carried out: after it succeeded (a full run's sweep, or
        records flagged deleted), or after its held deletion was confirmed."""
        if self.prune is not None or self.end is None:
            return False
        if self.end.held is not None:  # confirmed, unless a newer full run decided its deletions afresh first
            return self.confirm is not None and self.superseded is None
        return self.end.status == "succeeded" and (self.full or self.deleted > 0)

    @property
    def items_settled(self) -> int:
        """Item events that reached their end: in Qdrant, unchanged, deleted or dead-lettered."""
        return sum(c.settled for c in self.partition_counts().values())

    @property
    def items_pending(self) -> int:
        """Produced item events not settled yet."""
        return max(0, self.items_fetched - self.items_settled)

    def tenant_counts(self) -> dict[str, TenantCounts]:
        """Per tenant, for a run whose records name their own tenants: the counts of each tenant they named and of
        the run's own tenant (the rest); empty for a run whose records name none."""
        others: dict[str, TenantCounts] = {}
        for counts in self.partition_counts().values():
            for tenant, each in counts.tenants.items():
                others[tenant] = others.get(tenant, TenantCounts()) + each
        if not others:
            return {}
        named: TenantCounts = sum(others.values(), TenantCounts())
        own = TenantCounts(
            upserted=self.items_upserted - named.upserted,
            skipped=self.items_skipped - named.skipped,
            deleted=self.deleted - named.deleted,
            dead_lettered=self.embed_dead_lettered - named.dead_lettered,
        )
        return {self.tenant_id: own, **others} if own != TenantCounts() else others

    def _per_tenant(self) -> dict[str, dict[str, int]]:
        """The per-tenant counts as JSON, with what the run's deletions swept in each tenant."""
        swept = {tenant: deletion.swept for tenant, deletion in (self.prune.tenants if self.prune else {}).items()}
        counts = self.tenant_counts()
        return {
            tenant: {**counts.get(tenant, TenantCounts()).model_dump(), "swept": swept.get(tenant, 0)}
            for tenant in {**counts, **swept}
        }

    def partition_counts(self) -> dict[int, PartitionCounts]:
        """Per items partition, the counts reported furthest (the highest `next_offset` of any member): a member
        that lost a partition in a rebalance may have written lower ones, and counts never go back."""
        if self._merged is not None:
            return self._merged
        merged: dict[int, PartitionCounts] = {}
        for record in self.embeds.values():
            for partition, counts in record.partitions.items():
                known = merged.get(partition)
                if known is None or counts.next_offset > known.next_offset:
                    merged[partition] = counts
        self._merged = merged
        return merged

    @property
    def marks(self) -> dict[int, int]:
        """Per items partition, the highest offset the fetcher produced for the run."""
        return dict(self.fetch.marks) if self.fetch else {}

    # --- time ---
    @property
    def started_at(self) -> datetime | None:
        """When the run was requested (or, without a trigger's record, first fetched)."""
        marks = ([self.queued.at] if self.queued else []) + ([self.fetch.started_at] if self.fetch else [])
        return min(marks, default=None)

    @property
    def last_progress_at(self) -> datetime | None:
        """The latest fetcher or embedder record (a stall notice is not progress)."""
        marks = [e.at for e in self.embeds.values()] + ([self.fetch.at] if self.fetch else [])
        return max(marks, default=None)

    @property
    def stalls(self) -> int:
        """Times the watchdog found the run stalled."""
        return self.watchdog.stalls if self.watchdog else 0

    @property
    def stalled_at(self) -> datetime | None:
        """When the watchdog last acted on the run."""
        return self.watchdog.at if self.watchdog else None

    def idle_seconds(self, now: datetime) -> float:
        """Seconds since the last progress, or since the watchdog last acted on the run."""
        marks = [m for m in (self.last_progress_at, self.stalled_at, self.started_at) if m is not None]
        return (now - max(marks)).total_seconds() if marks else 0.0

    @property
    def seconds(self) -> float:
        """From the request to the last progress."""
        if self.started_at is None or self.last_progress_at is None:
            return 0.0
        return max(0.0, (self.last_progress_at - self.started_at).total_seconds())

    # --- status ---
    @property
    def final(self) -> Final | None:
        """How the run ended: the earliest final record (the order of keys on the topic does not matter)."""
        finals = []
        if self.end is not None:
            finals.append(Final(self.end.status, self.end.at, self.end.error))
        if self.fetch is not None and self.fetch.status in ("failed", "skipped"):
            finals.append(Final(self.fetch.status, self.fetch.at, self.fetch.error))
        if self.watchdog is not None and self.watchdog.status == "failed":
            finals.append(Final("failed", self.watchdog.at, self.watchdog.error))
        return min(finals, key=lambda f: f.at, default=None)

    @property
    def finished(self) -> bool:
        """Whether the run reached a final status."""
        return self.final is not None

    @property
    def done(self) -> bool:
        """Whether the run finished and its deletions, if it may make any, were carried out."""
        return self.finished and not self.deletion_pending

    @property
    def finished_at(self) -> datetime | None:
        """When the run reached its final status."""
        final = self.final
        return final.at if final else None

    @property
    def fetch_done(self) -> bool:
        """Whether the fetcher fetched every page."""
        return self.fetch is not None and self.fetch.status == "fetched"

    @property
    def status(self) -> RunStatusName:
        """queued, fetching, embedding, stalled (no progress since the watchdog's notice), or final."""
        final = self.final
        if final is not None and self.end is not None and self.end.held is not None and final.at == self.end.at:
            if self.prune is not None:
                return "succeeded"  # a person confirmed it, and it was carried out
            return "held" if self.superseded is None else "superseded"
        if final is not None:
            return final.status
        progress = self.last_progress_at
        if self.watchdog is not None and (progress is None or self.watchdog.at >= progress):
            return "stalled"
        if self.fetch is None:
            return "queued"
        return "embedding" if self.fetch_done else "fetching"

    @property
    def error(self) -> str | None:
        """Why the run failed, was skipped or stalled."""
        final = self.final
        if self.superseded is not None and self.status == "superseded":
            return (
                f"superseded: a newer full run ({self.superseded.run_id}) finished since and decided its deletions "
                "afresh; nothing this run held was deleted"
            )
        if final is not None:
            return final.error if self.status != "succeeded" else None
        return self.watchdog.error if self.status == "stalled" and self.watchdog else None

    @property
    def settled_by_count(self) -> bool:
        """Whether the fetch is done and the embedder counted at least as many events as were produced.

        Necessary for completion, not sufficient: events of a page emitted twice (a fetcher killed mid-page
        and resumed) count too, so `RunCompletion` also checks the group's committed offsets against the marks.
        """
        return self.fetch_done and not self.finished and self.items_settled >= self.items_fetched

    def summary(self) -> dict[str, Any]:
        """The run as plain JSON-able data (what `status --json`, `sync --json` and `/status` show)."""

        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        request = self.request
        return {
            "run_id": self.run_id,
            "tenant_id": self.tenant_id,
            "service": self.service,
            "sync_type": request.sync_type if request else None,
            "trigger": request.trigger if request else None,
            "status": self.status,
            "pages": self.pages,
            "items_fetched": self.items_fetched,
            "items_upserted": self.items_upserted,
            "items_skipped": self.items_skipped,
            "deleted": self.deleted,
            "swept": self.swept,
            "held": self.held.model_dump() if self.held else None,
            "confirmed": self.confirm is not None,
            "superseded_by": self.superseded.run_id if self.superseded else None,
            "tenants": self._per_tenant() or None,
            "dead_lettered": self.dead_lettered,
            "items_pending": self.items_pending,
            "stalls": self.stalls,
            "error": self.error,
            "started_at": iso(self.started_at),
            "last_progress_at": iso(self.last_progress_at),
            "finished_at": iso(self.finished_at),
            "seconds": round(self.seconds, 3),
        }

    def mark(self) -> RunMark:
        """This finished run as a cursor remembers it."""
        assert self.started_at is not None and self.finished_at is not None and self.request is not None
        return RunMark(
            run_id=self.run_id,
            sync_type=self.request.sync_type,
            started_at=self.started_at,
            finished_at=self.finished_at,
        )


class RunBook:
    """The runs kept on the run-state topic, by run id, and the cursors, by tenant and service."""

    def __init__(self) -> None:
        self.runs: dict[str, RunState] = {}
        self.cursors: dict[tuple[str, str], Cursor] = {}
        # The held runs' ids by tenant and service: a cursor supersedes those of its own, found without a scan of
        # every kept run (thousands of tenants' runs, and a cursor with each success).
        self._held: dict[tuple[str, str], set[str]] = {}

    def apply(self, record: RunRecord | Cursor) -> RunState | None:
        """Fold a record into its run (created on first sight); the run, or None for a cursor."""
        if isinstance(record, Cursor):
            slot = (record.tenant_id, record.service)
            self.cursors[slot] = record
            for run_id in self._held.get(slot, ()):
                self.runs[run_id].superseded = self.superseded_by(self.runs[run_id])
            return None
        run = self.runs.get(record.run_id)
        if run is None:
            run = self.runs[record.run_id] = RunState(record.run_id, record.tenant_id, record.service)
        elif (run.tenant_id, run.service) != (record.tenant_id, record.service):
            return None  # a run id reused for another tenant or service never takes over the run it names
        run.apply(record)
        if run.end is not None and run.end.held is not None:
            self._held.setdefault((run.tenant_id, run.service), set()).add(run.run_id)
            run.superseded = self.superseded_by(run)  # the cursor may come first when the topic is read back
        return run

    def cursor_after(self, run: RunState, mark: RunMark) -> Cursor:
        """The cursor of the run's tenant and service once the run (as `mark`) succeeded: its last success, and
        for a full run its last full run, move to it, unless a later run already moved them on."""
        previous = self.cursors.get((run.tenant_id, run.service))
        last = previous.last_success if previous and previous.last_success.finished_at > mark.finished_at else mark
        full = previous.last_full if previous else None
        if run.full and (full is None or full.finished_at < mark.finished_at):
            full = mark
        return Cursor(tenant_id=run.tenant_id, service=run.service, last_success=last, last_full=full)

    def forget(self, run_id: str, tenant_id: str | None = None, service: str | None = None) -> None:
        """Drop a run whose records were removed (a tombstone); one naming another tenant or service than the run
        (a reused run id's) drops nothing."""
        run = self.runs.get(run_id)
        if run is not None and tenant_id in (None, run.tenant_id) and service in (None, run.service):
            del self.runs[run_id]
            self._held.get((run.tenant_id, run.service), set()).discard(run_id)

    def get(self, run_id: str) -> RunState | None:
        """The run, if kept."""
        return self.runs.get(run_id)

    def starting_with(self, prefix: str) -> list[RunState]:
        """The kept runs whose id starts with `prefix` (tables show the first 12 characters), newest first."""
        return _by_start((r for r in self.runs.values() if r.run_id.startswith(prefix)), newest_first=True)

    def held(self) -> list[RunState]:
        """Runs whose deletions are held, waiting for a person, newest first (not those a newer full run of their
        tenant and service superseded: it decided its deletions afresh)."""
        runs = (self.runs[run_id] for held in self._held.values() for run_id in held)
        return _by_start((r for r in runs if r.status == "held"), newest_first=True)

    def superseded_by(self, run: RunState) -> RunMark | None:
        """For a held run, the newer full run of its tenant and service that succeeded after it finished, if any."""
        if run.end is None or run.end.held is None:
            return None
        newer = self.last_success(run.tenant_id, run.service, full=True)
        finished = run.finished_at
        return newer if newer is not None and finished is not None and newer.finished_at > finished else None

    def active(self) -> list[RunState]:
        """Runs not finished, oldest first."""
        return _by_start((r for r in self.runs.values() if not r.finished), newest_first=False)

    def last_success(self, tenant_id: str, service: str, full: bool = False) -> RunMark | None:
        """The latest succeeded run (or full run) of a tenant and service, from its cursor."""
        cursor = self.cursors.get((tenant_id, service))
        if cursor is None:
            return None
        return cursor.last_full if full else cursor.last_success

    def recent(self, limit: int = 50) -> list[RunState]:
        """The latest runs, newest first."""
        return _by_start(self.runs.values(), newest_first=True)[:limit]

    def expired(self, before: datetime, keep_per_service: int) -> list[RunState]:
        """Finished runs to remove: finished before `before`, or past the newest `keep_per_service` of their
        tenant and service. Active runs are never expired."""
        kept: dict[tuple[str, str], int] = {}
        expired = []
        for run in _by_start(self.runs.values(), newest_first=True):
            slot = (run.tenant_id, run.service)
            kept[slot] = kept.get(slot, 0) + 1
            finished_at = run.finished_at
            if finished_at is not None and (finished_at < before or kept[slot] > keep_per_service):
                expired.append(run)
        return expired


def _by_start(runs: Iterable[RunState], newest_first: bool) -> list[RunState]:
    return sorted(runs, key=lambda r: r.started_at or EPOCH, reverse=newest_first)


@dataclass(frozen=True)
class RelatedProgress:
    """Where the related-content edges stood when a one-shot sync ended."""

    waiting: int  # stored items whose edges were not computed
    error: str | None  # the stage's last error, when it was failing
    seconds: float  # how long the command waited for them after the runs ended

    def as_json(self) -> dict[str, Any]:
        """The `--json` form."""
        return {"waiting": self.waiting, "error": self.error, "seconds": round(self.seconds, 3)}


@dataclass
class SyncReport:
    """The outcome of a one-shot sync."""

    runs: list[RunState]
    points_in_collection: int
    seconds: float
    related: RelatedProgress | None = None  # with RELATED_EDGES=on

    @property
    def ok(self) -> bool:
        """Whether every run succeeded."""
        return all(r.status == "succeeded" for r in self.runs)

    def as_json(self) -> dict[str, Any]:
        """The `--json` form."""
        return {
            "runs": [run.summary() for run in self.runs],
            "items_fetched": sum(r.items_fetched for r in self.runs),
            "items_upserted": sum(r.items_upserted for r in self.runs),
            "items_skipped": sum(r.items_skipped for r in self.runs),
            "points_in_collection": self.points_in_collection,
            "seconds": round(self.seconds, 3),
            "related_edges": self.related.as_json() if self.related else None,
        }
