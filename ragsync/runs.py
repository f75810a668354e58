"""Sync runs, folded from `RunProgress` events: status, counts, checkpoint, and when a run is complete.

Folding is idempotent: pages are keyed by number and items by id, so a repeated or redelivered event changes
nothing. A run succeeds only when every item id the fetcher emitted is in Qdrant or dead-lettered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from ragsync.events import RunProgress, SyncRequest

RunStatusName = Literal["queued", "fetching", "embedding", "succeeded", "failed", "stalled", "skipped"]
FINAL = frozenset({"succeeded", "failed", "skipped"})


@dataclass
class RunState:
    """Everything known about one run."""

    run_id: str
    tenant_id: str
    service: str
    status: RunStatusName = "queued"
    request: SyncRequest | None = None
    page_items: dict[int, int] = field(default_factory=dict)
    page_dead: dict[int, int] = field(default_factory=dict)
    fetched_ids: set[str] = field(default_factory=set)
    upserted_ids: set[str] = field(default_factory=set)
    dead_ids: set[str] = field(default_factory=set)
    skipped_ids: set[str] = field(default_factory=set)
    deleted_ids: set[str] = field(default_factory=set)
    pruned: int | None = None
    fetch_done: bool = False
    stalls: int = 0
    stalled_at: datetime | None = None
    error: str | None = None
    started_at: datetime | None = None
    last_progress_at: datetime | None = None
    finished_at: datetime | None = None
    final_counts: tuple[int, int, int, int] | None = None  # fetched, upserted, pending, skipped: set when finished

    # --- counts ---
    @property
    def pages(self) -> int:
        """Pages completed."""
        return len(self.page_items)

    @property
    def last_page(self) -> int:
        """The checkpoint: the last page completed (0 before the first)."""
        return max(self.page_items, default=0)

    @property
    def items_fetched(self) -> int:
        """Distinct items the fetcher emitted."""
        return self.final_counts[0] if self.final_counts else len(self.fetched_ids)

    @property
    def items_upserted(self) -> int:
        """Distinct items in Qdrant."""
        return self.final_counts[1] if self.final_counts else len(self.upserted_ids)

    @property
    def dead_lettered(self) -> int:
        """Items dead-lettered by any stage."""
        return sum(self.page_dead.values()) + self.embed_dead_lettered

    @property
    def embed_dead_lettered(self) -> int:
        """Items the embedder dead-lettered (and that were not upserted later)."""
        return len(self.dead_ids - self.upserted_ids)

    @property
    def items_pending(self) -> int:
        """Fetched items neither in Qdrant nor dead-lettered yet."""
        if self.final_counts:
            return self.final_counts[2]
        return len(self.fetched_ids - self.upserted_ids - self.dead_ids - self.skipped_ids - self.deleted_ids)

    @property
    def deleted(self) -> int:
        """Items deleted because their record said so, plus points pruned after a full run."""
        return len(self.deleted_ids) + (self.pruned or 0)

    @property
    def items_skipped(self) -> int:
        """Items unchanged since they were stored: not embedded again."""
        return self.final_counts[3] if self.final_counts else len(self.skipped_ids - self.upserted_ids)

    @property
    def full(self) -> bool:
        """Whether this is a full sync (batch or daily), whose end may delete what it did not see."""
        return self.request is not None and self.request.sync_type in ("batch", "daily")

    def idle_seconds(self, now: datetime) -> float:
        """Seconds since the last progress, or since the watchdog last acted on the run."""
        marks = [m for m in (self.last_progress_at, self.stalled_at, self.started_at) if m is not None]
        return (now - max(marks)).total_seconds() if marks else 0.0

    @property
    def items_settled(self) -> int:
        """Fetched items that reached their end: in Qdrant or dead-lettered."""
        return self.items_fetched - self.items_pending

    @property
    def finished(self) -> bool:
        """Whether the run reached a final status."""
        return self.status in FINAL

    @property
    def seconds(self) -> float:
        """From the first to the last event of the run."""
        if self.started_at is None or self.last_progress_at is None:
            return 0.0
        return (self.last_progress_at - self.started_at).total_seconds()

    # --- folding ---
    def apply(self, event: RunProgress) -> None:
        """Fold one progress event into the state."""
        self.started_at = min(self.started_at or event.at, event.at)
        self.request = self.request or event.request
        if event.pruned is not None:
            self.pruned = max(self.pruned or 0, event.pruned)
            if self.finished:
                self.fetched_ids = set()  # pruned: the ids were kept only for that
        if self.finished:
            return  # late redeliveries of a finished run change nothing else
        if event.status not in ("stalled", "queued"):
            # A stall notice is not progress; everything else from the stages is.
            self.last_progress_at = max(self.last_progress_at or event.at, event.at)
        if event.source == "fetcher" and event.page is not None:
            self.page_items[event.page] = len(event.item_ids)
            self.page_dead[event.page] = event.dead_lettered
            self.fetched_ids.update(event.item_ids)
        elif event.source == "embedder":
            self.upserted_ids.update(event.item_ids)
            self.dead_ids.update(event.dead_item_ids)
            self.skipped_ids.update(event.skipped_ids)
            self.deleted_ids.update(event.deleted_ids)
        self._apply_status(event)

    def _apply_status(self, event: RunProgress) -> None:
        if event.status in ("failed", "skipped"):
            self._finish(event.status, event.at, event.error)
            return
        if event.status == "stalled":
            self.status, self.error = "stalled", event.error
            self.stalls += 1
            self.stalled_at = max(self.stalled_at or event.at, event.at)
            return
        if event.status == "queued":
            return  # the trigger's notice may arrive after the fetcher's first events
        if event.status == "fetched":
            self.fetch_done = True
        if self.fetch_done and self.items_pending == 0:
            self._finish("succeeded", event.at, None)
        else:
            self.status = "embedding" if self.fetch_done else "fetching"

    def _finish(self, status: RunStatusName, at: datetime, error: str | None) -> None:
        pending = self.items_pending
        self.status, self.finished_at = status, at
        if error is not None:
            self.error = error
        # Keep the counts, drop the id sets: a finished run is history and must stay small. A succeeded full run
        # keeps the ids it fetched until its stale points are pruned (`deleted` set).
        self.final_counts = (len(self.fetched_ids), len(self.upserted_ids), pending, self.items_skipped)
        self.dead_ids = {i for i in self.dead_ids if i not in self.upserted_ids}
        if not (status == "succeeded" and self.full and self.pruned is None):
            self.fetched_ids = set()
        self.upserted_ids, self.skipped_ids = set(), set()

    def summary(self) -> dict[str, Any]:
        """The run as plain JSON-able data (what `status --json` and `/status` show)."""

        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "run_id": self.run_id,
            "tenant_id": self.tenant_id,
            "service": self.service,
            "sync_type": self.request.sync_type if self.request else None,
            "trigger": self.request.trigger if self.request else None,
            "status": self.status,
            "pages": self.pages,
            "items_fetched": self.items_fetched,
            "items_upserted": self.items_upserted,
            "items_skipped": self.items_skipped,
            "deleted": self.deleted,
            "dead_lettered": self.dead_lettered,
            "items_pending": self.items_pending,
            "stalls": self.stalls,
            "error": self.error,
            "started_at": iso(self.started_at),
            "last_progress_at": iso(self.last_progress_at),
            "finished_at": iso(self.finished_at),
            "seconds": round(self.seconds, 3),
        }


class RunBook:
    """All runs seen, by run id."""

    def __init__(self) -> None:
        self.runs: dict[str, RunState] = {}

    def apply(self, event: RunProgress) -> RunState:
        """Fold an event into its run (created on first sight)."""
        run = self.runs.get(event.run_id)
        if run is None:
            run = self.runs[event.run_id] = RunState(event.run_id, event.tenant_id, event.service)
        run.apply(event)
        return run

    def get(self, run_id: str) -> RunState | None:
        """The run, if seen."""
        return self.runs.get(run_id)

    def active(self) -> list[RunState]:
        """Runs not finished, oldest first."""
        return sorted((r for r in self.runs.values() if not r.finished), key=lambda r: r.started_at or datetime.min)

    def last_success(self, tenant_id: str, service: str) -> RunState | None:
        """The latest succeeded run of a tenant and service (the next incremental sync starts from it)."""
        done = [
            r
            for r in self.runs.values()
            if r.status == "succeeded" and r.tenant_id == tenant_id and r.service == service and r.started_at
        ]
        return max(done, key=lambda r: r.started_at or datetime.min, default=None)

    def recent(self, limit: int = 50) -> list[RunState]:
        """The latest runs, newest first."""
        ordered = sorted(self.runs.values(), key=lambda r: r.started_at or datetime.min, reverse=True)
        return ordered[:limit]
