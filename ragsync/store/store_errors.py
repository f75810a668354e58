"""What can go wrong with the vector store, split by when: a store that cannot be opened or used as configured
(at start-up: the component does not start), and a search index that could not be built (while running: searches
stay exact, nothing stops)."""

from __future__ import annotations

from ragsync.errors import RunError, SetupError


class StoreError(SetupError):
    """The store cannot be opened or used as configured: a server that cannot be reached or refuses the key, a
    folder another process holds or an older layout wrote, a collection name that cannot be a folder. The message
    names the address, folder or setting, and what to change (QDRANT_URL, QDRANT_API_KEY, QDRANT_PATH,
    QDRANT_COLLECTION, QDRANT_EMBEDDED)."""


class IndexBuildError(RunError):
    """Building a collection's search index failed while running (the child that builds it could not start, or
    exited with an error). Nothing is lost: searches stay exact, only slower, until the next full run tries again.
    The message names the collection and the child's exit code and last output."""
