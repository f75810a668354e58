"""The one place that talks to Qdrant: upsert a batch, search, count. Embedded on disk locally, a server when
QDRANT_URL is set. Point ids are deterministic, so a redelivered item overwrites its point instead of duplicating.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from qdrant_client import QdrantClient, models

from ragsync.errors import SetupError
from ragsync.settings import Settings

POINT_NAMESPACE = uuid.UUID("6f1c2a7e-5b0d-4e43-9d2a-7a8f3c1e5b90")


def point_id(tenant_id: str, service: str, item_id: str, chunk: int = 0) -> str:
    """uuid5 of (tenant, service, item id, chunk): the same item always maps to the same point."""
    return str(uuid.uuid5(POINT_NAMESPACE, json.dumps([tenant_id, service, item_id, chunk])))


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


class StoreError(SetupError):
    """Qdrant could not be opened or refused an operation; the message says what to do."""


class VectorStore:
    """The live index, an alias (QDRANT_COLLECTION) over one collection per embedding model.

    Reads go through the alias; writes go to the current model's collection. When the model changes, the new
    collection fills while searches still see the old one, and the alias switches once it is complete.
    Thread-safe: the embedded mode is not, so every call holds one lock.
    """

    def __init__(self, client: QdrantClient, collection: str, embedded: bool = False) -> None:
        self._client = client
        self.collection = collection
        self.embedded = embedded
        self.target = collection  # the collection written to; set by `ensure_collection`
        self._lock = threading.Lock()

    @classmethod
    def open(cls, settings: Settings) -> VectorStore:
        """The server at QDRANT_URL, else the embedded store at QDRANT_PATH (one process per folder)."""
        if settings.qdrant_url:
            client = QdrantClient(url=settings.qdrant_url, api_key=settings.qdrant_api_key)
            return cls(client, settings.qdrant_collection)
        return cls.on_disk(settings.qdrant_path, settings.qdrant_collection)

    @classmethod
    def on_disk(cls, path: Path, collection: str) -> VectorStore:
        """Qdrant in this process, on disk at `path`."""
        path.mkdir(parents=True, exist_ok=True)
        try:
            client = QdrantClient(path=str(path))
        except RuntimeError as error:
            raise StoreError(
                f"cannot open the embedded Qdrant at {path}: {error}. Only one process may use a store folder: "
                "stop the other ragsync process, or give this one its own QDRANT_PATH, or set QDRANT_URL."
            ) from error
        return cls(client, collection, embedded=True)

    def close(self) -> None:
        """Release the store (and its folder lock)."""
        with self._lock:
            self._client.close()

    def collection_for(self, model: str, dimension: int) -> str:
        """The collection that holds `model`'s vectors."""
        slug = re.sub(r"[^a-z0-9]+", "-", model.lower()).strip("-")
        return f"{self.collection}--{slug}-{dimension}"

    def live_collection(self) -> str | None:
        """The collection the alias points to (what searches see), if any."""
        with self._lock:
            for alias in self._client.get_aliases().aliases:
                if alias.alias_name == self.collection:
                    return str(alias.collection_name)
        return None

    def ensure_collection(self, dimension: int, model: str) -> bool:
        """Write to `model`'s collection (created if missing); True while the alias still shows another one."""
        self.target = self.collection_for(model, dimension)
        live = self.live_collection()
        with self._lock:
            if live is None and self._client.collection_exists(self.collection):
                raise StoreError(
                    f"{self.collection!r} is a plain collection, not an alias (an older layout): "
                    f"delete it or set QDRANT_COLLECTION to another name"
                )
            if not self._client.collection_exists(self.target):
                self._client.create_collection(
                    self.target, vectors_config=models.VectorParams(size=dimension, distance=models.Distance.COSINE)
                )
                self._index_payload()
        if live is None:
            self.switch_alias()
            return False
        return live != self.target

    def switch_alias(self) -> None:
        """Point the alias at the collection being written, in one step: searches never see a gap."""
        live = self.live_collection()
        operations: list[models.AliasOperations] = []
        if live is not None:
            operations.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=self.collection)))
        operations.append(
            models.CreateAliasOperation(
                create_alias=models.CreateAlias(collection_name=self.target, alias_name=self.collection)
            )
        )
        with self._lock:
            self._client.update_collection_aliases(change_aliases_operations=operations)

    def _index_payload(self) -> None:
        # Filters by tenant and service must stay fast on a server; the embedded mode has no payload indexes.
        if self.embedded:
            return
        for name in ("tenant_id", "service", "item_id", "run_id"):
            self._client.create_payload_index(self.target, name, models.PayloadSchemaType.KEYWORD)

    def upsert(self, points: list[Point]) -> None:
        """Write a batch and wait until Qdrant acknowledged it."""
        if not points:
            return
        batch = [models.PointStruct(id=p.id, vector=p.vector, payload=p.payload) for p in points]
        with self._lock:
            self._client.upsert(self.target, points=batch, wait=True)

    def stored(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        """The `content_hash` and `chunks` stored for each of `ids` that exists (one round trip)."""
        if not ids:
            return {}
        with self._lock:
            found = self._client.retrieve(
                self.target, ids=ids, with_payload=["content_hash", "chunks"], with_vectors=False
            )
        return {str(p.id): dict(p.payload or {}) for p in found}

    def delete_item(self, tenant_id: str, service: str, item_id: str, from_chunk: int = 0) -> None:
        """Delete an item's points (only the chunks from `from_chunk` on, when it has fewer now)."""
        must: list[models.Condition] = [
            models.FieldCondition(key=k, match=models.MatchValue(value=v))
            for k, v in (("tenant_id", tenant_id), ("service", service), ("item_id", item_id))
        ]
        if from_chunk:
            must.append(models.FieldCondition(key="chunk", range=models.Range(gte=from_chunk)))
        with self._lock:
            self._client.delete(
                self.target, points_selector=models.FilterSelector(filter=models.Filter(must=must)), wait=True
            )

    def prune(self, tenant_id: str, service: str, keep: set[str], before: datetime) -> int:
        """Delete the service's points whose item is not in `keep` and that were written before `before`.

        Called after a full run fetched every page: what it did not see no longer exists upstream. Points
        written after `before` belong to a later run and are left alone.
        """
        stale: list[models.ExtendedPointId] = []
        offset = None
        flt = _filter(tenant_id, service)
        while True:
            with self._lock:
                records, offset = self._client.scroll(
                    self.target,
                    scroll_filter=flt,
                    limit=1000,
                    offset=offset,
                    with_payload=["item_id", "synced_at"],
                    with_vectors=False,
                )
            for record in records:
                payload = record.payload or {}
                synced = datetime.fromisoformat(str(payload.get("synced_at")))
                if payload.get("item_id") not in keep and synced < before:
                    stale.append(record.id)
            if offset is None:
                break
        for start in range(0, len(stale), 1000):
            with self._lock:
                self._client.delete(
                    self.target, points_selector=models.PointIdsList(points=stale[start : start + 1000]), wait=True
                )
        return len(stale)

    def search(
        self, vector: list[float], limit: int = 5, tenant_id: str | None = None, service: str | None = None
    ) -> list[Hit]:
        """The nearest points of the live index, optionally only of one tenant and/or service."""
        with self._lock:
            if not self._client.collection_exists(self.collection):
                return []
            result = self._client.query_points(
                self.collection, query=vector, limit=limit, query_filter=_filter(tenant_id, service), with_payload=True
            )
        return [Hit(score=p.score, payload=p.payload or {}) for p in result.points]

    def count(
        self,
        tenant_id: str | None = None,
        service: str | None = None,
        run_id: str | None = None,
        collection: str | None = None,
    ) -> int:
        """Exact number of points of the live index (or of `collection`), optionally of one tenant/service/run."""
        name = collection or self.collection
        with self._lock:
            if not self._client.collection_exists(name):
                return 0
            return int(self._client.count(name, count_filter=_filter(tenant_id, service, run_id), exact=True).count)

    def retrieve_ids(self, ids: list[str]) -> set[str]:
        """Which of `ids` are in the live index."""
        with self._lock:
            found = self._client.retrieve(self.collection, ids=ids, with_payload=False, with_vectors=False)
        return {str(p.id) for p in found}


def _filter(tenant_id: str | None, service: str | None, run_id: str | None = None) -> models.Filter | None:
    wanted = {"tenant_id": tenant_id, "service": service, "run_id": run_id}
    must: list[models.Condition] = [
        models.FieldCondition(key=key, match=models.MatchValue(value=value))
        for key, value in wanted.items()
        if value is not None
    ]
    return models.Filter(must=must) if must else None
