"""The one place that talks to the vector store: upsert a batch, touch, search, count, sweep.

`open_store` picks the backend from the settings: a Qdrant server when QDRANT_URL is set, else the embedded
store at QDRANT_PATH (qdrant-edge by default, qdrant-client's local mode with QDRANT_EMBEDDED=local). Point ids
are deterministic, so a redelivered item overwrites its point instead of duplicating.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ragsync.store.base import DeletionScope, Hit, Point, VectorStore, point_id
from ragsync.store.store_errors import IndexBuildError, StoreError

__all__ = [
    "DeletionScope",
    "Hit",
    "IndexBuildError",
    "Point",
    "StoreError",
    "StoreOptions",
    "VectorStore",
    "open_store",
    "point_id",
]


@dataclass(frozen=True, kw_only=True)
class StoreOptions:
    """Which store holds the vectors: a Qdrant server at `url` (with its API key), else the embedded store in
    `path` (qdrant-edge, or qdrant-client's local mode); the alias every collection hides behind; and the free disk
    the embedded store needs before it opens (0: not watched)."""

    url: str | None
    api_key: str | None = field(repr=False)  # never in a log line or a traceback's locals
    path: Path
    embedded: Literal["edge", "local"] = "edge"
    collection: str
    min_free_mb: float = 0.0


def open_store(options: StoreOptions) -> VectorStore:
    """The store the options name: the server at `url`, else the embedded store at `path`."""
    if options.url or options.embedded == "local":
        from ragsync.store.client_store import ClientStore  # qdrant-client takes 0.6 s to import: only when used

        if options.url:
            return ClientStore.server(options.url, options.collection, options.api_key)
        return ClientStore.local(options.path, options.collection)
    from ragsync.store.edge_store import EdgeStore

    return EdgeStore.open(options.path, options.collection)
