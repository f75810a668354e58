"""Each embedded store: upsert points/s in the embedder's batch size, search latency, reopen time."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.report import Row
from benchmarks.sampling import LongestPause
from ragsync.store import Point, VectorStore, point_id
from ragsync.store.client_store import ClientStore
from ragsync.store.edge_store import EdgeStore

STORES: dict[str, Callable[[Path], VectorStore]] = {
    "qdrant-edge": lambda folder: EdgeStore.open(folder, "bench"),
    "qdrant-client local": lambda folder: ClientStore.local(folder, "bench"),
}


def store_rows(name: str, folder: Path, points: int, batch: int) -> list[Row]:
    """Fill a new store with `points` random 384-d points, `batch` per upsert as the embedder does, search it,
    reopen it."""
    rng = np.random.default_rng(1)
    vectors = rng.uniform(-1, 1, size=(points, 384)).astype(np.float32)  # made before the clock starts
    store = STORES[name](folder)
    store.ensure_collection(384, "random")
    started = time.perf_counter()
    for start in range(0, points, batch):
        rows = vectors[start : start + batch].tolist()  # the embedder hands the store lists too
        store.upsert(
            [
                Point(point_id("t", "s", str(i)), row, {"tenant_id": "t", "service": "s", "item_id": str(i)})
                for i, row in enumerate(rows, start)
            ]
        )
    upsert_s = time.perf_counter() - started
    rows = [Row(f"store ({name}): upsert", "random 384-d", points, upsert_s, points / upsert_s)]
    query = rng.uniform(-1, 1, size=384).tolist()
    rows.append(_search_row(f"store ({name}): search, filtered by tenant", store, query, points))
    with LongestPause() as pause:
        started = time.perf_counter()
        store.optimize()
        optimize_s = time.perf_counter() - started
    if name == "qdrant-edge":
        rows.append(
            Row(
                f"store ({name}): build the index",
                "random 384-d",
                points,
                optimize_s,
                0.0,
                f"the process's other threads paused at most {pause.seconds:.2f} s meanwhile",
            )
        )
        rows.append(_search_row(f"store ({name}): search after the index", store, query, points))
    store.close()
    started = time.perf_counter()
    reopened = STORES[name](folder)
    reopened.count()
    reopen_s = time.perf_counter() - started
    reopened.close()
    rows.append(Row(f"store ({name}): reopen", "random 384-d", points, reopen_s, 0.0, f"{reopen_s:.2f} s"))
    return rows


def _search_row(label: str, store: VectorStore, query: list[float], points: int) -> Row:
    timings = []
    for _ in range(20):
        started = time.perf_counter()
        store.search(query, 10, tenant_id="t")
        timings.append(time.perf_counter() - started)
    median = statistics.median(timings)
    return Row(label, "random 384-d", points, median, 0.0, f"median {median * 1000:.1f} ms")
