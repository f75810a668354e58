"""The messages on every topic: versioned pydantic models, JSON on the wire.

A model is the only contract between two stages. Every message carries its run id and tenant.
Unknown fields are rejected rather than ignored, so that a misspelt field in a hand-written request
is an error that names it, not a silently different sync.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from ragsync.keys import cursor_key, item_key, run_key

SyncType = Literal["batch", "daily", "incremental"]
Trigger = Literal["cron", "startup", "cli", "http", "manual", "watchdog", "replay", "model-change"]
SERVICE_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,99}$"
LetterStage = Literal["fetcher", "embedder"]  # the stages that write dead letters


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

    def for_tenant(self, default_tenant: str) -> TenantRequest:
        """This request with its tenant decided: its own, or `default_tenant` (DEFAULT_TENANT_ID)."""
        return TenantRequest.model_validate({**dict(self), "tenant_id": self.tenant_id or default_tenant})


class TenantRequest(SyncRequest):
    """A sync request whose tenant is decided, at the edge where requests come in: what stages work with."""

    tenant_id: str = Field(min_length=1, max_length=200)


class ItemEvent(Event):
    """One record of one service, as the fetcher got it from the Coordinator."""

    v: Literal[1] = 1
    run_id: str
    tenant_id: str
    service: str
    item_id: str = Field(min_length=1)
    run_tenant_id: str | None = Field(
        None, description="The run's tenant, where the record names another one (its schema's tenant_field)."
    )
    op: Literal["upsert", "delete"] = Field("upsert", description="delete: remove the item's points.")
    page: int = Field(ge=1)
    sync_type: SyncType = "batch"
    record: dict[str, Any]
    emitted_at: datetime = Field(default_factory=utc_now)

    @property
    def key(self) -> str:
        """The Kafka key: items of one record always land in one partition, in order."""
        return item_key(self.tenant_id, self.service, self.item_id)

    @property
    def identity(self) -> tuple[str, str, str]:
        """Which item the event is about, to tell items apart: not `key`, whose joined text two tenants can share
        (tenant `a` with item `b/s/c`, tenant `a/s/b` with item `c`)."""
        return (self.tenant_id, self.service, self.item_id)


FetchStatus = Literal["fetching", "fetched", "failed", "skipped"]


class RunRecord(Event):
    """A keyed snapshot of one part of a run's state, on the compacted run-state topic (sync-runs).

    Each part has one writer and one key (see `ragsync.keys`), so the latest record of each key is that part's
    whole truth and compaction may drop every older one. No record holds item ids: a run's state is
    O(items-topic partitions), whatever its size.
    """

    v: Literal[2] = 2
    kind: str
    run_id: str
    tenant_id: str
    service: str
    at: datetime = Field(default_factory=utc_now)

    @property
    def key(self) -> str:
        """The record's key on the run-state topic."""
        return run_key(self.tenant_id, self.service, self.run_id, self.kind)


class RunQueued(RunRecord):
    """A trigger published the run's request (written once, before any fetcher saw it)."""

    kind: Literal["queued"] = "queued"
    request: SyncRequest


class FetchProgress(RunRecord):
    """The fetcher's account of a run after each page: its checkpoint, what it produced and where.

    `marks` maps each items-topic partition the run produced to the highest offset the broker acknowledged for it:
    the run is complete once the embedder group's committed offsets passed every mark.
    """

    kind: Literal["fetch"] = "fetch"
    request: SyncRequest
    status: FetchStatus
    pages: int = Field(0, ge=0, description="The checkpoint: pages done, in order from page 1.")
    produced: int = Field(0, ge=0, description="Item events produced for the run.")
    dead_lettered: int = Field(0, ge=0, description="Records the fetcher dead-lettered (no usable id).")
    dead_reasons: dict[str, int] = Field(default_factory=dict, description="Those records by kind of reason.")
    dead_examples: dict[str, str] = Field(default_factory=dict, description="The first reason of each kind, in full.")
    marks: dict[int, int] = Field(default_factory=dict)
    last_page: str | None = Field(
        None, max_length=500, description="The last page as the Coordinator answered it: records, why it was the last."
    )
    started_at: datetime = Field(default_factory=utc_now)
    error: str | None = None

    all_tenants: bool = Field(
        False,
        description="The run fetches the whole service, whose records name their own tenants (a tenant_field "
        "schema, and a request of the default tenant): its deletions cover every tenant of the service.",
    )

    @classmethod
    def begin(cls, request: TenantRequest, all_tenants: bool = False) -> FetchProgress:
        """The record of a run whose fetch starts now, from page 1."""
        return cls(
            run_id=request.run_id,
            tenant_id=request.tenant_id,
            service=request.service,
            request=request,
            status="fetching",
            all_tenants=all_tenants,
        )


# A run's per-tenant counts name at most this many tenants per items partition; the events of any further tenant
# are counted under OTHER_TENANTS, so a run state record stays small whatever the tenants its records name.
MAX_TENANTS_COUNTED = 100
OTHER_TENANTS = "(other tenants)"


class TenantCounts(BaseModel):
    """What became of the item events of one tenant's records in a run (records that name their own tenant)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    upserted: int = Field(0, ge=0)
    skipped: int = Field(0, ge=0)
    deleted: int = Field(0, ge=0)
    dead_lettered: int = Field(0, ge=0)

    def __add__(self, other: TenantCounts) -> TenantCounts:
        return TenantCounts(
            upserted=self.upserted + other.upserted,
            skipped=self.skipped + other.skipped,
            deleted=self.deleted + other.deleted,
            dead_lettered=self.dead_lettered + other.dead_lettered,
        )


class PartitionCounts(BaseModel):
    """What became of a run's item events on one items partition, below `next_offset`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    next_offset: int = Field(ge=0)
    upserted: int = Field(0, ge=0)
    skipped: int = Field(0, ge=0, description="Unchanged since stored, or superseded in the same batch.")
    deleted: int = Field(0, ge=0)
    dead_lettered: int = Field(0, ge=0)
    tenants: dict[str, TenantCounts] = Field(
        default_factory=dict,
        description="Of these, the events of records naming a tenant other than the run's, by tenant (at most "
        "MAX_TENANTS_COUNTED, the rest under OTHER_TENANTS).",
    )

    @property
    def settled(self) -> int:
        """Events that reached their end: stored, unchanged, deleted or dead-lettered."""
        return self.upserted + self.skipped + self.deleted + self.dead_lettered


class EmbedProgress(RunRecord):
    """One embedder member's counts of a run, per items partition it processed, cumulatively (one record per
    batch and run, whatever the partitions).

    A partition's counts cover the run's events below its `next_offset`. A member counts only events past the
    highest `next_offset` any member reported for the partition, so events delivered again (after a rebalance or
    a crash) are stored again but never counted twice.
    """

    kind: Literal["embed"] = "embed"
    member: str = Field(min_length=1)
    partitions: dict[int, PartitionCounts] = Field(default_factory=dict)

    @property
    def key(self) -> str:
        """The record's key: one per run and member."""
        return run_key(self.tenant_id, self.service, self.run_id, self.kind, self.member)


class WatchdogNotice(RunRecord):
    """The stall watchdog acted on the run: marked it stalled (and re-requested it) or failed it."""

    kind: Literal["watchdog"] = "watchdog"
    status: Literal["stalled", "failed"]
    stalls: int = Field(0, ge=0)
    error: str


class Deletion(BaseModel):
    """What a run's deletions remove from its tenant's points of its service: the points its sweep finds unseen
    and the points of the records it found flagged deleted, counted by filter, out of the points there were."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    swept: int = Field(0, ge=0, description="Points of items the full run did not see.")
    deleted: int = Field(0, ge=0, description="Points of records flagged deleted.")
    points: int = Field(0, ge=0, description="The tenant's points of the service, before the deletion.")

    @property
    def total(self) -> int:
        """Points removed."""
        return self.swept + self.deleted

    def __add__(self, other: Deletion) -> Deletion:
        return Deletion(
            swept=self.swept + other.swept, deleted=self.deleted + other.deleted, points=self.points + other.points
        )

    @property
    def share(self) -> float:
        """The share of the points removed (0 when there were none)."""
        return self.total / self.points if self.points else 0.0


class RunEnded(RunRecord):
    """Every item event the run produced was committed by the embedder group after Qdrant acknowledged it: the run
    succeeded, or failed because too many of its records were dead-lettered (RUN_MAX_DEAD_LETTER_SHARE), or
    because its deletions were over the budget (RUN_MAX_DELETE_SHARE): `held` says what they would remove."""

    kind: Literal["end"] = "end"
    status: Literal["succeeded", "failed"] = "succeeded"
    error: str | None = None
    held: Deletion | None = None


class DeletionConfirmed(RunRecord):
    """A person confirmed a held run's deletion (`ragsync prune RUN --confirm`): the pruner carries it out."""

    kind: Literal["confirm"] = "confirm"
    by: str = Field("cli", max_length=200, description="Where the confirmation came from: cli or http.")


class RunPruned(RunRecord):
    """A run's deletions, carried out: after a succeeded run, or after a held run was confirmed. `pruned` is what
    the sweep removed (points of items a full run did not see), `deleted` the points of records flagged deleted."""

    kind: Literal["pruned"] = "pruned"
    pruned: int = Field(ge=0)
    deleted: int = Field(0, ge=0)
    tenants: dict[str, Deletion] = Field(
        default_factory=dict, description="Per tenant, for a run whose records name their own: what was removed."
    )


class RunMark(BaseModel):
    """A finished run, as a cursor remembers it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str
    sync_type: SyncType
    started_at: datetime
    finished_at: datetime


class Cursor(Event):
    """Per tenant and service, the last succeeded run and the last succeeded full run. Never expires: incremental
    syncs start from it and the NoRecentSuccess alert reads it, however old the runs themselves are."""

    v: Literal[2] = 2
    kind: Literal["cursor"] = "cursor"
    tenant_id: str
    service: str
    last_success: RunMark
    last_full: RunMark | None = None
    at: datetime = Field(default_factory=utc_now)

    @property
    def key(self) -> str:
        """The cursor's key on the run-state topic."""
        return cursor_key(self.tenant_id, self.service)


StateRecord = Annotated[
    RunQueued | FetchProgress | EmbedProgress | WatchdogNotice | RunEnded | DeletionConfirmed | RunPruned | Cursor,
    Field(discriminator="kind"),
]
STATE_RECORD: TypeAdapter[StateRecord] = TypeAdapter(StateRecord)


class DeadLetter(Event):
    """Work a stage could not do, with the reason and the original message, kept for inspection and replay."""

    v: Literal[1] = 1
    run_id: str | None
    tenant_id: str | None
    service: str | None
    item_id: str | None = None
    stage: LetterStage
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
