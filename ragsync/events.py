"""The messages on every topic: versioned pydantic models, JSON on the wire.

A model is the only contract between two stages. Every message carries its run id and tenant.
Unknown fields are rejected rather than ignored, so that a misspelt field in a hand-written request
is an error that names it, not a silently different sync.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

SyncType = Literal["batch", "daily", "incremental"]
Trigger = Literal["cron", "startup", "cli", "http", "manual", "watchdog", "replay", "model-change"]
SERVICE_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,99}$"


def utc_now() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def new_run_id() -> str:
    """A fresh, unique run id."""
    return uuid.uuid4().hex


class Event(BaseModel):
    """Base of every message: strict about unknown fields, JSON-encoded."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_bytes(self) -> bytes:
        """The JSON bytes that go on the wire."""
        return self.model_dump_json().encode()


class SyncRequest(Event):
    """Asks for one service to be synced. Publish it to the sync-requests topic as JSON."""

    v: Literal[1] = 1
    run_id: str = Field(default_factory=new_run_id, min_length=1, max_length=200)
    tenant_id: str | None = Field(None, min_length=1, max_length=200, description="Unset: DEFAULT_TENANT_ID.")
    service: str = Field(pattern=SERVICE_PATTERN)
    sync_type: SyncType = "batch"
    since: datetime | None = Field(None, description="Only for incremental syncs: records changed after this.")
    limit: int | None = Field(None, ge=1, le=100_000, description="Records per page. Unset: BATCH_SYNC_LIMIT.")
    trigger: Trigger = "manual"
    requested_at: datetime = Field(default_factory=utc_now)


class ItemEvent(Event):
    """One record of one service, as the fetcher got it from the Coordinator."""

    v: Literal[1] = 1
    run_id: str
    tenant_id: str
    service: str
    item_id: str = Field(min_length=1)
    op: Literal["upsert", "delete"] = Field("upsert", description="delete: remove the item's points.")
    page: int = Field(ge=1)
    sync_type: SyncType = "batch"
    record: dict[str, Any]
    emitted_at: datetime = Field(default_factory=utc_now)

    @property
    def key(self) -> str:
        """The Kafka key: items of one record always land in one partition, in order."""
        return f"{self.tenant_id}/{self.service}/{self.item_id}"


RunStatus = Literal["queued", "fetching", "fetched", "failed", "stalled", "skipped"]
ProgressSource = Literal["trigger", "fetcher", "embedder", "watchdog"]


class RunProgress(Event):
    """A change to a sync run, from any stage. Folding them in any order, with repeats, gives the same run.

    The fetcher names the page it completed and the ids it emitted from it; the embedder names the ids it put in
    Qdrant or dead-lettered. Ids make the accounting exact under at-least-once delivery: an item redelivered and
    upserted twice still counts once.
    """

    v: Literal[1] = 1
    run_id: str
    tenant_id: str
    service: str
    source: ProgressSource
    status: RunStatus | None = None
    request: SyncRequest | None = Field(None, description="The run's request, on its first event (for re-requests).")
    page: int | None = Field(None, ge=1, description="The page this event completes (fetcher).")
    item_ids: list[str] = Field(default_factory=list, description="Fetched (fetcher) or upserted (embedder) ids.")
    dead_item_ids: list[str] = Field(default_factory=list, description="Ids the embedder dead-lettered.")
    skipped_ids: list[str] = Field(default_factory=list, description="Ids unchanged since stored: not re-embedded.")
    deleted_ids: list[str] = Field(default_factory=list, description="Ids deleted (the record said so).")
    pruned: int | None = Field(None, ge=0, description="Points deleted after a full run because it did not see them.")
    dead_lettered: int = Field(0, ge=0, description="Records of `page` the fetcher dead-lettered (no usable id).")
    error: str | None = None
    at: datetime = Field(default_factory=utc_now)


class DeadLetter(Event):
    """Work a stage could not do, with the reason and the original message, kept for inspection and replay."""

    v: Literal[1] = 1
    run_id: str | None
    tenant_id: str | None
    service: str | None
    item_id: str | None = None
    stage: Literal["fetcher", "embedder"]
    reason: str
    source_topic: str
    source_partition: int | None = None
    source_offset: int | None = None
    original: str = Field(description="The original message value, as text (invalid UTF-8 replaced).")
    at: datetime = Field(default_factory=utc_now)


def describe_validation_error(error: ValidationError) -> str:
    """One line naming each bad field and the value it had, for logs and dead letters."""
    parts = []
    for item in error.errors():
        field = ".".join(str(p) for p in item["loc"]) or "(message)"
        parts.append(f"{field}={item.get('input')!r:.80}: {item['msg']}")
    return f"{error.title}: " + "; ".join(parts)
