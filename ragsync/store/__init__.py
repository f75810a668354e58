"""The one place that talks to the vector store: upsert a batch, touch, search, count, sweep.

`open_store` picks the backend from the settings: a Qdrant server when QDRANT_URL is set, else the embedded
store at QDRANT_PATH (qdrant-edge by default, qdrant-client's local mode with QDRANT_EMBEDDED=local). Point ids
are deterministic, so a redelivered item overwrites its point instead of duplicating.
"""

from __future__ import annotations

from ragsync.settings import Settings, reveal
from ragsync.store.base import DeletionScope, Hit, Point, VectorStore, point_id
from ragsync.store.store_errors import IndexBuildError, StoreError

__all__ = ["DeletionScope", "Hit", "IndexBuildError", "Point", "StoreError", "VectorStore", "open_store", "point_id"]


def open_store(settings: Settings) -> VectorStore:
    """The store the settings name: QDRANT_URL's server, else the embedded store at QDRANT_PATH."""
    if settings.qdrant_url or settings.qdrant_embedded == "local":
        from ragsync.store.client_store import ClientStore  # qdrant-client takes 0.6 s to import: only when used

        if settings.qdrant_url:
            return ClientStore.server(settings.qdrant_url, settings.qdrant_collection, reveal(settings.qdrant_api_key))
        return ClientStore.local(settings.qdrant_path, settings.qdrant_collection)
    from ragsync.store.edge_store import EdgeStore

    return EdgeStore.open(settings.qdrant_path, settings.qdrant_collection)
