"""The embedded default: Qdrant's own engine in this process (qdrant-edge: WAL, segments, HNSW, payload
indexes), one shard folder per collection and the alias in a small JSON file beside them.

Layout of QDRANT_PATH: `.lock` (held while a process owns the folder), `aliases.json`, `collections/<name>/`.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, cast

import qdrant_edge as edge

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
from ragsync.store.store_errors import IndexBuildError, StoreError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# A write is in the shard's write-ahead log when `update` returns, which survives this process crashing (see
# tests/integration/test_store.py); flushing it into the segments costs 0.1-0.25 s whatever the batch size (fsync),
# so segments are flushed at most this often and at close, as a Qdrant server does (its flush_interval_sec: 5).
FLUSH_EVERY_S = 5.0


class EdgeStore(VectorStore):
    """A VectorStore over qdrant-edge shards in one folder, owned by one process at a time."""

    # The child that builds an index imports qdrant-edge alone (50 ms), not this process's modules.
    OPTIMIZE = """
import sys, qdrant_edge
shard = qdrant_edge.EdgeShard.load(sys.argv[1])
try:
    shard.optimize()
finally:
    shard.close()
"""

    def __init__(self, root: Path, collection: str, lock: IO[bytes]) -> None:
        super().__init__(_checked_name(collection))
        self.root = root
        self._lock_file = lock
        self._shards: dict[str, edge.EdgeShard] = {}
        self._optimized: set[str] = set()  # collections optimized by this process, not written since
        self._flushed_at: dict[str, float] = {}  # collection -> when its segments were last flushed
        # This process owns the folder, so the file is read once and only this process changes it.
        aliases = root / "aliases.json"
        self._aliases: dict[str, str] = dict(json.loads(aliases.read_text())) if aliases.exists() else {}

    @classmethod
    def open(cls, root: Path, collection: str) -> EdgeStore:
        """Own the store folder at `root` (created if missing); a second owner gets a StoreError."""
        if (root / "meta.json").exists():
            raise StoreError(
                f"{root} holds a store written by qdrant-client's local mode: set QDRANT_EMBEDDED=local to keep "
                "using it, or point QDRANT_PATH at a new folder and run a full sync to fill it"
            )
        (root / "collections").mkdir(parents=True, exist_ok=True)
        lock = open(root / ".lock", "wb")  # noqa: SIM115 - held until close()
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            lock.close()
            raise StoreError(
                f"cannot open the embedded store at {root}: another process holds it. Only one process may use "
                "a store folder: stop the other ragsync process, or give this one its own QDRANT_PATH, or set "
                "QDRANT_URL."
            ) from error
        return cls(root, collection, lock)

    def _folder(self, name: str) -> Path:
        return self.root / "collections" / _checked_name(name)

    def _shard(self, name: str) -> edge.EdgeShard:
        shard = self._shards.get(name)
        if shard is None:
            shard = self._shards[name] = edge.EdgeShard.load(str(self._folder(name)))
        return shard

    def _exists(self, name: str) -> bool:
        return name in self._shards or (self._folder(name) / "wal").exists()

    def _create(self, name: str, dimension: int) -> None:
        vectors = edge.EdgeVectorParams(size=dimension, distance=edge.Distance.Cosine)
        self._shards[name] = edge.EdgeShard.create(str(self._folder(name)), edge.EdgeConfig(vectors=vectors))

    def _add_indexes(self, name: str) -> None:
        indexes = [(key, edge.PayloadSchemaType.Keyword) for key in PAYLOAD_KEYWORDS]
        indexes += [(key, edge.PayloadSchemaType.Float) for key in PAYLOAD_FLOATS]
        present = set(self._shard(name).info().payload_schema)
        missing = [edge.UpdateOperation.create_field_index(k, schema) for k, schema in indexes if k not in present]
        if missing:
            self._apply(name, *missing)

    def _apply(self, name: str, *operations: edge.UpdateOperation) -> None:
        """Apply the operations to the collection: in its write-ahead log, so durable before the caller commits
        (a crash of this process loses none of it); its segments are flushed every FLUSH_EVERY_S."""
        shard = self._shard(name)
        self._optimized.discard(name)
        for operation in operations:
            shard.update(operation)
        now = time.monotonic()
        if now - self._flushed_at.setdefault(name, now) >= FLUSH_EVERY_S:
            shard.flush()
            self._flushed_at[name] = now

    def _alias(self) -> str | None:
        return self._aliases.get(self.collection)

    def _set_alias(self, target: str) -> None:
        # Written aside and renamed over: a reopened store reads the old alias or the new one, never half a file.
        aliases = self._aliases | {self.collection: target}
        aside = self.root / "aliases.json.new"
        aside.write_text(json.dumps(aliases, indent=1))
        os.replace(aside, self.root / "aliases.json")
        self._aliases = aliases

    def _upsert(self, name: str, points: list[Point]) -> None:
        self._apply(name, edge.UpdateOperation.upsert_points([edge.Point(p.id, p.vector, p.payload) for p in points]))

    def _retrieve(self, name: str, ids: list[str], fields: list[str], vectors: bool = False) -> list[Record]:
        found = self._shard(name).retrieve(
            cast("list[edge.PointId]", ids), with_payload=fields or False, with_vector=vectors
        )
        return [Record(str(r.id), dict(r.payload or {}), plain_vector(r.vector) if vectors else None) for r in found]

    def _scroll(
        self, name: str, selection: Selection, fields: list[str], offset: str | None
    ) -> tuple[list[Record], str | None]:
        request = edge.ScrollRequest(
            offset=offset, limit=SCROLL_PAGE, filter=_filter(selection), with_payload=fields or False, with_vector=False
        )
        records, after = self._shard(name).scroll(request)
        return [Record(str(r.id), dict(r.payload or {})) for r in records], None if after is None else str(after)

    def _set_payload(self, name: str, ids: list[str], payload: dict[str, Any]) -> None:
        self._apply(name, edge.UpdateOperation.set_payload(cast("list[edge.PointId]", ids), payload))

    def _set_payloads(self, name: str, payloads: dict[str, dict[str, Any]]) -> None:
        operations = [edge.UpdateOperation.set_payload([cast("edge.PointId", p)], v) for p, v in payloads.items()]
        self._apply(name, *operations)

    def _delete(self, name: str, selection: Selection) -> None:
        self._apply(name, edge.UpdateOperation.delete_points_by_filter(_filter(selection) or edge.Filter()))

    def _delete_ids(self, name: str, ids: list[str]) -> None:
        # Flushed as every write, at most every FLUSH_EVERY_S: one flush after a whole sweep kept its unflushed
        # deletes in memory (+50 MB for 50,000 of 100,000 points) and stopped the other threads for 0.2-0.8 s.
        self._apply(name, edge.UpdateOperation.delete_points(cast("list[edge.PointId]", ids)))

    def _query(
        self, name: str, vector: list[float], limit: int, selection: Selection, fields: list[str] | None = None
    ) -> list[Hit]:
        with_payload = True if fields is None else fields or False
        request = edge.QueryRequest(
            limit=limit, query=edge.Query.Nearest(vector), filter=_filter(selection), with_payload=with_payload
        )
        found = self._shard(name).query(request)
        return [Hit(score=p.score, payload=dict(p.payload or {}), id=str(p.id)) for p in found]

    def _count(self, name: str, selection: Selection) -> int:
        return self._shard(name).count(edge.CountRequest(exact=True, filter=_filter(selection)))

    def _facet(self, name: str, key: str, selection: Selection, limit: int) -> dict[str, int]:
        request = edge.FacetRequest(key=key, limit=limit, exact=True, filter=_filter(selection))
        return {str(hit.value): hit.count for hit in self._shard(name).facet(request).hits}

    def optimize(self) -> bool:
        """Merge segments and build the HNSW index of the collection being written (after a bulk load); False,
        with nothing done, when this process optimized it and wrote nothing since.

        It runs in a child process: qdrant-edge holds the GIL while it optimizes (9 s at 20,000 points, 69 s at
        100,000), which would freeze this whole process, its consumer heartbeats and health checks included. The
        shard is closed meanwhile, so this store's reads and writes wait for it; the event loop does not."""
        with self._lock:
            name = self.target
            if name in self._optimized or not self._exists(name):
                return False
            shard = self._shards.pop(name, None)
            if shard is not None:
                shard.flush()
                shard.close()
            self.busy = f"building the search index of {name} (since {datetime.now(UTC):%H:%M:%S} UTC)"
            try:
                child = subprocess.run(
                    [sys.executable, "-c", self.OPTIMIZE, str(self._folder(name))], capture_output=True, text=True
                )
            except OSError as error:
                raise IndexBuildError(f"could not start building the index of {name}: {error}") from error
            finally:
                self.busy = None
                self._shard(name)  # reopened, whatever the child did
            if child.returncode != 0:
                raise IndexBuildError(
                    f"building the index of {name} failed ({child.returncode}): {child.stderr[-2000:]}"
                )
            self._optimized.add(name)
            return True

    def _close(self) -> None:
        for shard in self._shards.values():
            shard.flush()
            shard.close()
        self._shards.clear()
        self._lock_file.close()  # releases the folder


def _filter(selection: Selection) -> edge.Filter | None:
    if selection.everything:
        return None
    must: list[edge.ConditionType] = [
        edge.FieldCondition(key=key, match=edge.MatchValue(value)) for key, value in selection.equals.items()
    ]
    if selection.chunk_from:
        must.append(edge.FieldCondition(key="chunk", range=edge.RangeFloat(gte=selection.chunk_from)))
    must_not: list[edge.ConditionType] = [
        edge.FieldCondition(key=key, match=edge.MatchValue(value)) for key, value in selection.differs.items()
    ]
    if selection.before is not None:
        # must_not (field >= bound) rather than must (field < bound): a point lacking the field matches neither
        # range, so only this form selects it.
        key, bound = selection.before
        must_not.append(edge.FieldCondition(key=key, range=edge.RangeFloat(gte=bound)))
    return edge.Filter(must=must or None, must_not=must_not or None)


def _checked_name(name: str) -> str:
    # Collection names become folder names: nothing that could leave the store folder.
    if not NAME.match(name) or name in {".", ".."}:
        raise StoreError(f"QDRANT_COLLECTION={name!r} cannot name a folder: use letters, digits, '.', '_' and '-'")
    return name
