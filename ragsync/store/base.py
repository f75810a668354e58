"""What every store does, whatever holds the vectors: one live alias over one collection per embedding model,
deterministic point ids, sweeping stale points by generation. A backend supplies only the primitives (create,
upsert, scroll, query, ...).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from ragsync.events import Deletion
from ragsync.store.store_errors import StoreError

POINT_NAMESPACE = uuid.UUID("6f1c2a7e-5b0d-4e43-9d2a-7a8f3c1e5b90")
# `related_ids` (the first-point ids an item's related-content edges point at) finds the edges that point at an item;
# `deleted_by` (the run that found the item's record flagged deleted) finds the points a run's deletions remove.
PAYLOAD_KEYWORDS = ("tenant_id", "service", "item_id", "run_id", "generation", "related_ids", "deleted_by")
PAYLOAD_FLOATS = ("touched_at",)
SCROLL_PAGE = 1000


def point_id(tenant_id: str, service: str, item_id: str, chunk: int = 0) -> str:
    """uuid5 of (tenant, service, item id, chunk): the same item always maps to the same point.

    `uuid.uuid5` spelled out (SHA-1 of the namespace and the name, version and variant bits set), without its
    UUID object: the same ids in half the time, which counts at every point of every batch."""
    digest = bytearray(
        hashlib.sha1(POINT_NAMESPACE.bytes + json.dumps([tenant_id, service, item_id, chunk]).encode()).digest()[:16]
    )
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    hexed = digest.hex()
    return f"{hexed[:8]}-{hexed[8:12]}-{hexed[12:16]}-{hexed[16:20]}-{hexed[20:]}"


def plain_vector(stored: Any) -> list[float]:
    """A point's one vector as a list, as either backend gives it (a dict holds it under "" for named vectors)."""
    return list(stored.get("", next(iter(stored.values()))) if isinstance(stored, dict) else stored)


@dataclass(frozen=True)
class Point:
    """One vector and its payload."""

    id: str
    vector: list[float]
    payload: dict[str, Any]


@dataclass(frozen=True)
class Hit:
    """One search result."""

    score: float
    payload: dict[str, Any]
    id: str = ""


@dataclass(frozen=True)
class Selection:
    """Which points an operation touches: payload fields equal to values, fields that differ from values, chunks
    from `chunk_from` on, and a numeric field below a bound.

    `differs` and `before` also hold for points that lack the field: points written before a field existed count
    as different and as older than any bound.
    """

    equals: dict[str, str] = field(default_factory=dict)
    chunk_from: int = 0
    differs: dict[str, str] = field(default_factory=dict)
    before: tuple[str, float] | None = None  # (field, bound): the field is below the bound, or missing

    @classmethod
    def of(cls, chunk_from: int = 0, **equals: str | None) -> Selection:
        """The points whose given fields (those not None) have the given values."""
        return cls({k: v for k, v in equals.items() if v is not None}, chunk_from)

    @property
    def everything(self) -> bool:
        """True when nothing narrows the selection."""
        return not self.equals and not self.chunk_from and not self.differs and self.before is None


@dataclass(frozen=True, kw_only=True)
class DeletionScope:
    """Whose points a run's deletions may touch, and which: its tenant's points of its service, those it found
    flagged deleted (marked with its id) and, after a full run, those it did not see (another generation, last
    written or touched before it started, at `before` in epoch seconds)."""

    run_id: str
    tenant_id: str
    service: str
    full: bool
    before: float
    all_tenants: bool = False  # the run fetched the whole service, whose records name their own tenants

    @property
    def owner(self) -> dict[str, str]:
        """The payload fields every point the scope covers has: its service, and its tenant unless all_tenants."""
        return {"service": self.service} if self.all_tenants else {"tenant_id": self.tenant_id, "service": self.service}


# A run's deletions are counted per tenant for at most this many tenants of one service (a facet's size).
MAX_TENANTS_JUDGED = 100_000


def _marked(scope: DeletionScope) -> Selection:
    return Selection({**scope.owner, "deleted_by": scope.run_id})


def _unseen(scope: DeletionScope) -> Selection:
    # Points without the fields (older layouts) count as unseen and older than the run.
    return Selection(dict(scope.owner), differs={"generation": scope.run_id}, before=("touched_at", scope.before))


@dataclass(frozen=True)
class Record:
    """A stored point's id and the payload fields asked for (and its vector, when asked for)."""

    id: str
    payload: dict[str, Any]
    vector: list[float] | None = None


class VectorStore(ABC):
    """The live index, an alias (QDRANT_COLLECTION) over one collection per embedding model.

    Reads go through the alias; writes go to the current model's collection. When the model changes, the new
    collection fills while searches still see the old one, and the alias switches once it is complete.
    Thread-safe: every call holds one lock, since the embedded backends are not.
    """

    def __init__(self, collection: str) -> None:
        self.collection = collection
        self.target = collection  # the collection written to; set by `ensure_collection`
        self._lock = threading.Lock()
        self.busy: str | None = None  # what the store is doing that its calls wait for (read without the lock)

    # --- primitives, one set per backend ---

    @abstractmethod
    def _exists(self, name: str) -> bool: ...

    @abstractmethod
    def _create(self, name: str, dimension: int) -> None: ...

    @abstractmethod
    def _add_indexes(self, name: str) -> None:
        """Create the payload indexes (PAYLOAD_KEYWORDS, PAYLOAD_FLOATS) that collection `name` lacks."""

    @abstractmethod
    def _alias(self) -> str | None: ...

    @abstractmethod
    def _set_alias(self, target: str) -> None: ...

    @abstractmethod
    def _upsert(self, name: str, points: list[Point]) -> None: ...

    @abstractmethod
    def _retrieve(self, name: str, ids: list[str], fields: list[str], vectors: bool = False) -> list[Record]: ...

    @abstractmethod
    def _scroll(
        self, name: str, selection: Selection, fields: list[str], offset: str | None
    ) -> tuple[list[Record], str | None]: ...

    @abstractmethod
    def _set_payload(self, name: str, ids: list[str], payload: dict[str, Any]) -> None: ...

    def _set_payloads(self, name: str, payloads: dict[str, dict[str, Any]]) -> None:
        """Set another payload on each point; a backend that can send them together overrides this."""
        for point, payload in payloads.items():
            self._set_payload(name, [point], payload)

    @abstractmethod
    def _delete(self, name: str, selection: Selection) -> None: ...

    @abstractmethod
    def _delete_ids(self, name: str, ids: list[str]) -> None: ...

    @abstractmethod
    def _query(
        self, name: str, vector: list[float], limit: int, selection: Selection, fields: list[str] | None = None
    ) -> list[Hit]: ...

    @abstractmethod
    def _count(self, name: str, selection: Selection) -> int: ...

    @abstractmethod
    def _facet(self, name: str, key: str, selection: Selection, limit: int) -> dict[str, int]:
        """How many points of `selection` hold each value of the keyword field `key` (the `limit` commonest)."""

    @abstractmethod
    def _close(self) -> None: ...

    def optimize(self) -> bool:
        """Build the search index after a bulk load; whether this call built one (a server does it by itself)."""
        return False

    # --- the store's behaviour, the same for every backend ---

    def close(self) -> None:
        """Release the store (and its folder lock)."""
        with self._lock:
            self._close()

    def collection_for(self, model: str, dimension: int) -> str:
        """The collection that holds `model`'s vectors."""
        slug = re.sub(r"[^a-z0-9]+", "-", model.lower()).strip("-")
        return f"{self.collection}--{slug}-{dimension}"

    def live_collection(self) -> str | None:
        """The collection the alias points to (what searches see), if any."""
        with self._lock:
            return self._alias()

    def ensure_collection(self, dimension: int, model: str) -> bool:
        """Write to `model`'s collection (created if missing); True while the alias still shows another one."""
        self.target = self.collection_for(model, dimension)
        with self._lock:
            live = self._alias()
            if live is None and self._exists(self.collection):
                raise StoreError(
                    f"{self.collection!r} is a plain collection, not an alias (an older layout): "
                    f"delete it or set QDRANT_COLLECTION to another name"
                )
            if not self._exists(self.target):
                self._create(self.target, dimension)
            # Also on a collection created by an earlier release: a field indexed since (related_ids) would
            # otherwise be filtered by scanning every point.
            self._add_indexes(self.target)
            if live is None:
                self._set_alias(self.target)
                return False
        return live != self.target

    def write_to_live(self) -> bool:
        """Write to the collection searches see, as a command that loads no model does; False when none exists."""
        live = self.live_collection()
        if live is not None:
            self.target = live
        return live is not None

    def switch_alias(self) -> None:
        """Point the alias at the collection being written, in one step: searches never see a gap."""
        with self._lock:
            self._set_alias(self.target)

    def upsert(self, points: list[Point]) -> None:
        """Write a batch and return once it is durable."""
        if points:
            with self._lock:
                self._upsert(self.target, points)

    def stored(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        """The `content_hash` and `chunks` stored for each of `ids` that exists (one lookup)."""
        if not ids:
            return {}
        with self._lock:
            found = self._retrieve(self.target, ids, ["content_hash", "chunks"])
        return {record.id: record.payload for record in found}

    def delete_item(self, tenant_id: str, service: str, item_id: str, from_chunk: int = 0) -> None:
        """Delete an item's points (only the chunks from `from_chunk` on, when it has fewer now)."""
        selection = Selection.of(from_chunk, tenant_id=tenant_id, service=service, item_id=item_id)
        with self._lock:
            self._delete(self.target, selection)

    def touch(self, ids: list[str], generation: str, at: float) -> None:
        """Mark existing points as seen by run `generation` at `at` (epoch seconds), so `sweep` keeps them.

        For the points of unchanged items, which are not written again. An id with no point raises (after the
        others may have been marked, which is harmless to repeat): the point went since the caller looked it up,
        and a retried batch finds it missing and writes it again. A record seen again is no longer deleted:
        the mark of an earlier run's held deletion goes, so confirming that run later leaves the point alone.
        """
        if ids:
            with self._lock:
                self._set_payload(self.target, ids, {"generation": generation, "touched_at": at, "deleted_by": ""})

    def mark_deleted(self, tenant_id: str, service: str, item_id: str, run_id: str, at: float) -> None:
        """Mark an item's points as deleted by run `run_id`: they go with the run's deletions (`remove`), once
        its deletion budget allows or a person confirmed it, never before. Marked as touched by the run too, so
        its sweep does not count them a second time."""
        selection = Selection.of(tenant_id=tenant_id, service=service, item_id=item_id)
        payload = {"generation": run_id, "touched_at": at, "deleted_by": run_id}
        offset: str | None = None
        while True:
            with self._lock:  # read and marked under one hold: a point deleted meanwhile is not marked
                records, offset = self._scroll(self.target, selection, [], offset)
                if records:
                    self._set_payload(self.target, [record.id for record in records], payload)
            if offset is None:
                return

    def deletion(self, scope: DeletionScope) -> dict[str, Deletion]:
        """Per tenant of the scope, what `remove(scope)` would delete and the points there are, counted by filter
        (a facet on the tenant): no id is listed, so this costs three counts whatever the size of the service."""
        with self._lock:
            if not self._exists(self.target):
                return {}  # nothing stored yet: nothing to delete
            points = self._per_tenant(Selection(scope.owner))
            deleted = self._per_tenant(_marked(scope))
            swept = self._per_tenant(_unseen(scope)) if scope.full else {}
        return {
            tenant: Deletion(swept=swept.get(tenant, 0), deleted=deleted.get(tenant, 0), points=count)
            for tenant, count in points.items()
        }

    def _per_tenant(self, selection: Selection) -> dict[str, int]:
        return {t: n for t, n in self._facet(self.target, "tenant_id", selection, MAX_TENANTS_JUDGED).items() if n}

    def remove(self, scope: DeletionScope) -> dict[str, Deletion]:
        """Carry out a run's deletions: the points of records it found flagged deleted and, after a full run,
        the points it did not see (the sweep). What it removed, per tenant (as `deletion` counted it just
        before: `points` are those there were)."""
        removed = self.deletion(scope)
        self._delete_selected(_marked(scope))
        if scope.full:
            self._delete_selected(_unseen(scope))
        return removed

    def _delete_selected(self, selection: Selection) -> int:
        """Delete the points of `selection`; how many."""
        # Page by page rather than one delete by filter: that call gathers every matching id in memory
        # and holds this lock, and in qdrant-edge the GIL, for all of them. Measured on 100,000 points, half
        # stale (qdrant-edge): one call took 0.9 s, its heap grew 30 MB and the other threads stopped for up to
        # 0.8 s, both growing with the store; the pages took 2.4 s in all, 50 ms each, with the heap flat.
        # Each page is read and deleted under one hold, so a point touched meanwhile is either not read or
        # already gone (and its touch raises); between pages other calls get the lock. The offset goes on
        # after the page just deleted, so no page scans again what earlier pages passed over.
        deleted = 0
        offset: str | None = None
        while True:
            with self._lock:
                records, offset = self._scroll(self.target, selection, [], offset)
                if records:
                    self._delete_ids(self.target, [record.id for record in records])
            deleted += len(records)
            if offset is None:
                return deleted

    def sweep(self, tenant_id: str, service: str, generation: str, before: float) -> int:
        """Delete the service's points that run `generation` neither wrote nor touched and that were last written
        or touched before `before` (epoch seconds): what a full run did not see. How many were deleted."""
        scope = DeletionScope(run_id=generation, tenant_id=tenant_id, service=service, full=True, before=before)
        return self._delete_selected(_unseen(scope))

    def search(
        self, vector: list[float], limit: int = 5, tenant_id: str | None = None, service: str | None = None
    ) -> list[Hit]:
        """The nearest points of the live index, optionally only of one tenant and/or service."""
        with self._lock:
            live = self._alias()
            if live is None:
                return []
            return self._query(live, vector, limit, Selection.of(tenant_id=tenant_id, service=service))

    def items(self, service: str, collection: str) -> int:
        """Items of `service` in `collection` (their first points): points per item depend on the model's chunk
        size, so collections of two models are compared by items."""
        with self._lock:
            if not self._exists(collection):
                return 0
            return self._count(collection, Selection({"service": service}, before=("chunk", 1)))

    def count(
        self,
        tenant_id: str | None = None,
        service: str | None = None,
        run_id: str | None = None,
        collection: str | None = None,
    ) -> int:
        """Exact number of points of the live index (or of `collection`), optionally of one tenant/service/run."""
        with self._lock:
            name = collection or self._alias()
            if name is None or not self._exists(name):
                return 0
            return self._count(name, Selection.of(tenant_id=tenant_id, service=service, run_id=run_id))

    # --- what the related-content stage reads and writes: the collection being written, like the embedder ---

    def points(self, ids: list[str], fields: list[str], vectors: bool = False, live: bool = False) -> dict[str, Record]:
        """The points of `ids` that exist, with the payload fields asked for (and vectors): in the collection being
        written, or (`live`) in what searches see."""
        if not ids:
            return {}
        with self._lock:
            name = self._alias() if live else self.target
            found = self._retrieve(name, ids, fields, vectors) if name is not None else []
        return {record.id: record for record in found}

    def nearest(self, vector: list[float], limit: int, tenant_id: str, fields: list[str]) -> list[Hit]:
        """The tenant's points nearest `vector` in the collection being written, with the payload fields asked
        for (never another tenant's)."""
        with self._lock:
            return self._query(self.target, vector, limit, Selection.of(tenant_id=tenant_id), fields)

    def pointing_at(self, tenant_id: str, key: str, value: str, fields: list[str]) -> list[Record]:
        """The tenant's points whose keyword list `key` holds `value`, with the payload fields asked for."""
        selection = Selection({"tenant_id": tenant_id, key: value})
        found: list[Record] = []
        offset: str | None = None
        while True:
            with self._lock:
                records, offset = self._scroll(self.target, selection, fields, offset)
            found += records
            if offset is None:
                return found

    def set_payloads(self, payloads: dict[str, dict[str, Any]]) -> None:
        """Set fields of several points, each its own values (the other fields stay). A point that no longer
        exists raises, as `touch` does."""
        if payloads:
            with self._lock:
                self._set_payloads(self.target, payloads)

    def retrieve_ids(self, ids: list[str]) -> set[str]:
        """Which of `ids` are in the live index."""
        with self._lock:
            live = self._alias()
            return {record.id for record in self._retrieve(live, ids, [])} if live else set()
