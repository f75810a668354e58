"""The one place that talks to Qdrant: upsert a batch, search, count. Embedded on disk locally, a server when
QDRANT_URL is set. Point ids are deterministic, so a redelivered item overwrites its point instead of duplicating.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass
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
    """A Qdrant collection. Thread-safe: the embedded mode is not, so every call holds one lock."""

    def __init__(self, client: QdrantClient, collection: str, embedded: bool = False) -> None:
        self._client = client
        self.collection = collection
        self.embedded = embedded
        self._lock = threading.Lock()

    @classmethod
    def open(cls, settings: Settings) -> VectorStore:
        """The server at QDRANT_URL, else the embedded store at QDRANT_PATH (one process per folder)."""
        if settings.qdrant_url:
            return cls(
                QdrantClient(url=settings.qdrant_url, api_key=settings.qdrant_api_key), settings.qdrant_collection
            )
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

    def ensure_collection(self, dimension: int) -> None:
        """Create the collection (cosine distance) if missing; check its dimension if present."""
        with self._lock:
            if self._client.collection_exists(self.collection):
                info = self._client.get_collection(self.collection)
                vectors = info.config.params.vectors
                size = vectors.size if isinstance(vectors, models.VectorParams) else None
                if size is not None and size != dimension:
                    raise StoreError(
                        f"collection {self.collection!r} holds {size}-dimension vectors but the model makes "
                        f"{dimension}; set QDRANT_COLLECTION to a new name for this model"
                    )
            else:
                self._client.create_collection(
                    self.collection, vectors_config=models.VectorParams(size=dimension, distance=models.Distance.COSINE)
                )
                self._index_payload()

    def _index_payload(self) -> None:
        # Filters by tenant and service must stay fast on a server; the embedded mode has no payload indexes.
        if self.embedded:
            return
        for field in ("tenant_id", "service", "run_id"):
            self._client.create_payload_index(self.collection, field, models.PayloadSchemaType.KEYWORD)

    def upsert(self, points: list[Point]) -> None:
        """Write a batch and wait until Qdrant acknowledged it."""
        if not points:
            return
        batch = [models.PointStruct(id=p.id, vector=p.vector, payload=p.payload) for p in points]
        with self._lock:
            self._client.upsert(self.collection, points=batch, wait=True)

    def search(
        self, vector: list[float], limit: int = 5, tenant_id: str | None = None, service: str | None = None
    ) -> list[Hit]:
        """The nearest points, optionally only of one tenant and/or service."""
        with self._lock:
            if not self._client.collection_exists(self.collection):
                return []
            result = self._client.query_points(
                self.collection, query=vector, limit=limit, query_filter=_filter(tenant_id, service), with_payload=True
            )
        return [Hit(score=p.score, payload=p.payload or {}) for p in result.points]

    def count(self, tenant_id: str | None = None, service: str | None = None, run_id: str | None = None) -> int:
        """Exact number of points (optionally of one tenant, service or run)."""
        with self._lock:
            if not self._client.collection_exists(self.collection):
                return 0
            flt = _filter(tenant_id, service, run_id)
            return int(self._client.count(self.collection, count_filter=flt, exact=True).count)

    def retrieve_ids(self, ids: list[str]) -> set[str]:
        """Which of `ids` are stored."""
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
