"""Sync runs, folded from `RunProgress` events: counts, status, and when a run is complete."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

from ragsync.events import RunProgress

RunStatusName = Literal["queued", "fetching", "embedding", "succeeded", "failed"]


@dataclass
class RunState:
    """Everything known about one run."""

    run_id: str
    tenant_id: str
    service: str
    status: RunStatusName = "queued"
    pages: int = 0
    items_fetched: int = 0
    items_upserted: int = 0
    fetch_dead_lettered: int = 0
    embed_dead_lettered: int = 0
    fetch_done: bool = False
    error: str | None = None
    started_at: datetime | None = None
    last_progress_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def dead_lettered(self) -> int:
        """Items dead-lettered by any stage."""
        return self.fetch_dead_lettered + self.embed_dead_lettered

    @property
    def items_settled(self) -> int:
        """Fetched items that reached their end: in Qdrant or dead-lettered by the embedder."""
        return self.items_upserted + self.embed_dead_lettered

    @property
    def finished(self) -> bool:
        """Whether the run reached a final status."""
        return self.status in ("succeeded", "failed")

    @property
    def seconds(self) -> float:
        """From the first to the last event of the run."""
        if self.started_at is None or self.last_progress_at is None:
            return 0.0
        return (self.last_progress_at - self.started_at).total_seconds()

    def apply(self, event: RunProgress) -> None:
        """Fold one progress event into the state."""
        self.started_at = self.started_at or event.at
        self.last_progress_at = max(self.last_progress_at or event.at, event.at)
        self.pages += event.pages
        self.items_fetched += event.items_fetched
        self.items_upserted += event.items_upserted
        if event.source == "fetcher":
            self.fetch_dead_lettered += event.dead_lettered
        else:
            self.embed_dead_lettered += event.dead_lettered
        if event.status == "failed":
            self.status, self.error, self.finished_at = "failed", event.error, event.at
        elif event.status == "fetched":
            self.fetch_done = True
        self._settle(event.at)

    def _settle(self, at: datetime) -> None:
        if self.status == "failed":
            return
        if self.fetch_done and self.items_settled >= self.items_fetched:
            self.status, self.finished_at = "succeeded", at
        elif self.fetch_done or self.items_settled:
            self.status = "embedding"
        else:
            self.status = "fetching"

    def summary(self) -> dict[str, Any]:
        """The run as plain JSON-able data."""
        data = asdict(self)
        data["dead_lettered"] = self.dead_lettered
        data["seconds"] = round(self.seconds, 3)
        for key in ("started_at", "last_progress_at", "finished_at"):
            data[key] = data[key].isoformat() if data[key] else None
        return data


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
