"""The store through qdrant-client: a Qdrant server (QDRANT_URL), its in-memory mode, or its older on-disk
local mode. The local mode (QDRANT_EMBEDDED=local) is kept for folders written before the edge store became the
default.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from ragsync.store.base import (
    PAYLOAD_FLOATS,
    PAYLOAD_KEYWORDS,
    SCROLL_PAGE,
    Hit,
    Point,
    Record,
    Selection,
    VectorStore,
    plain_vector,
)
from ragsync.store.store_errors import StoreError

log = logging.getLogger(__name__)


class ClientStore(VectorStore):
    """A VectorStore over a QdrantClient."""

    def __init__(self, client: QdrantClient, collection: str, indexes_payload: bool = True) -> None:
        super().__init__(collection)
        self._client = client
        self._indexes_payload = indexes_payload

    @classmethod
    def server(cls, url: str, collection: str, api_key: str | None = None) -> ClientStore:
        """A Qdrant server; filters by tenant and service use payload indexes. Raises `StoreError` with what to
        change when the server cannot be reached or refuses the key."""
        if api_key and url.startswith("http://"):
            log.warning("QDRANT_API_KEY is sent in clear text to %s: use an https:// QDRANT_URL", url)
        with warnings.catch_warnings():  # said above, once, in our words
            warnings.filterwarnings("ignore", message="Api key is used with an insecure connection")
            client = QdrantClient(url=url, api_key=api_key, timeout=10)
        try:
            client.get_collections()
        except UnexpectedResponse as error:
            client.close()
            fix = "check QDRANT_API_KEY" if error.status_code in (401, 403) else "check QDRANT_URL"
            raise StoreError(f"Qdrant at {url} answered {error.status_code} {error.reason_phrase}: {fix}") from error
        except ResponseHandlingException as error:
            client.close()
            raise StoreError(
                f"cannot reach Qdrant at {url}: {error.source}. Start the Qdrant server, or fix QDRANT_URL "
                "(unset, ragsync keeps an embedded store at QDRANT_PATH)"
            ) from error
        return cls(client, collection)

    @classmethod
    def memory(cls, collection: str) -> ClientStore:
        """qdrant-client's in-memory mode: the server code path, nothing kept."""
        return cls(QdrantClient(location=":memory:"), collection, indexes_payload=False)

    @classmethod
    def local(cls, path: Path, collection: str) -> ClientStore:
        """qdrant-client's local mode on disk at `path` (one process per folder)."""
        path.mkdir(parents=True, exist_ok=True)
        try:
            client = QdrantClient(path=str(path))
        except RuntimeError as error:
            raise StoreError(
                f"cannot open the embedded Qdrant at {path}: {error}. Only one process may use a store folder: "
                "stop the other ragsync process, or give this one its own QDRANT_PATH, or set QDRANT_URL."
            ) from error
        # The local mode has no payload indexes (it warns and ignores them).
        return cls(client, collection, indexes_payload=False)

    def _exists(self, name: str) -> bool:
        return bool(self._client.collection_exists(name))

    def _create(self, name: str, dimension: int) -> None:
        self._client.create_collection(
            name, vectors_config=models.VectorParams(size=dimension, distance=models.Distance.COSINE)
        )

    def _add_indexes(self, name: str) -> None:
        if not self._indexes_payload:
            return
        present = set(self._client.get_collection(name).payload_schema or {})
        indexes = [(key, models.PayloadSchemaType.KEYWORD) for key in PAYLOAD_KEYWORDS]
        indexes += [(key, models.PayloadSchemaType.FLOAT) for key in PAYLOAD_FLOATS]
        for key, schema in indexes:
            if key not in present:
                self._client.create_payload_index(name, key, schema)

    def _alias(self) -> str | None:
        for alias in self._client.get_aliases().aliases:
            if alias.alias_name == self.collection:
                return str(alias.collection_name)
        return None

    def _set_alias(self, target: str) -> None:
        operations: list[models.AliasOperations] = []
        if self._alias() is not None:
            operations.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=self.collection)))
        operations.append(
            models.CreateAliasOperation(
                create_alias=models.CreateAlias(collection_name=target, alias_name=self.collection)
            )
        )
        self._client.update_collection_aliases(change_aliases_operations=operations)

    def _upsert(self, name: str, points: list[Point]) -> None:
        batch = [models.PointStruct(id=p.id, vector=p.vector, payload=p.payload) for p in points]
        self._client.upsert(name, points=batch, wait=True)

    def _retrieve(self, name: str, ids: list[str], fields: list[str], vectors: bool = False) -> list[Record]:
        found = self._client.retrieve(name, ids=ids, with_payload=fields or False, with_vectors=vectors)
        return [Record(str(p.id), dict(p.payload or {}), plain_vector(p.vector) if vectors else None) for p in found]

    def _scroll(
        self, name: str, selection: Selection, fields: list[str], offset: str | None
    ) -> tuple[list[Record], str | None]:
        records, after = self._client.scroll(
            name,
            scroll_filter=_filter(selection),
            limit=SCROLL_PAGE,
            offset=offset,
            with_payload=fields or False,
            with_vectors=False,
        )
        return [Record(str(r.id), dict(r.payload or {})) for r in records], None if after is None else str(after)

    def _set_payload(self, name: str, ids: list[str], payload: dict[str, Any]) -> None:
        selector = models.PointIdsList(points=list[models.ExtendedPointId](ids))
        self._client.set_payload(name, payload=payload, points=selector, wait=True)

    def _set_payloads(self, name: str, payloads: dict[str, dict[str, Any]]) -> None:
        # One request for all of them: a Qdrant server is a round trip away.
        operations: list[models.UpdateOperation] = [
            models.SetPayloadOperation(
                set_payload=models.SetPayload(payload=payload, points=list[models.ExtendedPointId]([point]))
            )
            for point, payload in payloads.items()
        ]
        self._client.batch_update_points(name, update_operations=operations, wait=True)

    def _delete(self, name: str, selection: Selection) -> None:
        flt = _filter(selection) or models.Filter()
        self._client.delete(name, points_selector=models.FilterSelector(filter=flt), wait=True)

    def _delete_ids(self, name: str, ids: list[str]) -> None:
        selector = models.PointIdsList(points=list[models.ExtendedPointId](ids))
        self._client.delete(name, points_selector=selector, wait=True)

    def _query(
        self, name: str, vector: list[float], limit: int, selection: Selection, fields: list[str] | None = None
    ) -> list[Hit]:
        with_payload = True if fields is None else fields or False
        result = self._client.query_points(
            name, query=vector, limit=limit, query_filter=_filter(selection), with_payload=with_payload
        )
        return [Hit(score=p.score, payload=p.payload or {}, id=str(p.id)) for p in result.points]

    def _count(self, name: str, selection: Selection) -> int:
        return int(self._client.count(name, count_filter=_filter(selection), exact=True).count)

    def _facet(self, name: str, key: str, selection: Selection, limit: int) -> dict[str, int]:
        found = self._client.facet(name, key, facet_filter=_filter(selection), limit=limit, exact=True)
        return {str(hit.value): hit.count for hit in found.hits}

    def _close(self) -> None:
        self._client.close()


def _filter(selection: Selection) -> models.Filter | None:
    if selection.everything:
        return None
    must: list[models.Condition] = [
        models.FieldCondition(key=key, match=models.MatchValue(value=value)) for key, value in selection.equals.items()
    ]
    if selection.chunk_from:
        must.append(models.FieldCondition(key="chunk", range=models.Range(gte=selection.chunk_from)))
    must_not: list[models.Condition] = [
        models.FieldCondition(key=key, match=models.MatchValue(value=value)) for key, value in selection.differs.items()
    ]
    if selection.before is not None:
        # must_not (field >= bound) rather than must (field < bound): a point lacking the field matches neither
        # range, so only this form selects it.
        key, bound = selection.before
        must_not.append(models.FieldCondition(key=key, range=models.Range(gte=bound)))
    return models.Filter(must=must or None, must_not=must_not or None)
