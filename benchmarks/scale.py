"""The pipeline against a fast encoder: the tiny random encoder of `benchmarks.tiny_encoder` (built here, from the
packaged model's tokenizer) through the real stages (broker, fetcher, one embedder process, embedded store), at
sizes large enough that only per-item costs count. Compared with that encoder's own items/s in a process of its own,
with one model thread on both sides. The embedder runs the model in a child process (EMBEDDING_PROCESS), whose memory
is reported beside the embedder's.

The embedder's heap grows with the points of the embedded store it holds (qdrant-edge keeps its id tracker, payload
indexes and the segment being written in memory), so the same points are also written to a store alone, in a
process of its own: what is left of the embedder's heap besides the store's must stay flat.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid

from benchmarks.consumers import SERVICE, raw_encode_rate, timed_sync
from benchmarks.pipeline import Bench
from benchmarks.report import Row
from benchmarks.tiny_encoder import build

GOAL = 0.5  # of the encoder's own items/s: the pipeline must not be what a fast encoder waits on
ENCODES = 3  # timed encodes of 5,000 texts before the sync, and as many after

# Points shaped as the embedder writes them (64-d, a payment record in the payload), into a store alone.
STORE_ALONE = """
import json, random, sys, tempfile
from pathlib import Path
from ragsync.demo.records import demo_record
from ragsync.store import Point, point_id
from ragsync.store.edge_store import EdgeStore

def heap_mb():
    return int(next(l for l in open("/proc/self/status") if l.startswith("RssAnon")).split()[1]) / 1024

store = EdgeStore.open(Path(tempfile.mkdtemp()), "c")
store.ensure_collection(64, "m")
start, added, written = heap_mb(), {}, 0
for size in sorted(json.loads(sys.argv[1])):
    while written < size:
        records = [demo_record("payment-service", i) for i in range(written, min(written + 1024, size))]
        store.upsert([Point(point_id("t", "s", r["id"]), [random.random() for _ in range(64)], {
            "tenant_id": "t", "service": "s", "item_id": r["id"], "chunk": 0, "chunks": 1, "text": json.dumps(r),
            "content_hash": "0" * 16, "run_id": "r" * 32, "generation": "r" * 32, "touched_at": 1.0, "model": "m",
            "synced_at": r["updated_at"], "record": r}) for r in records])
        written += len(records)
    added[size] = heap_mb() - start
store.close()
print(json.dumps(added))
"""


async def scale_rows(bench: Bench, sizes: list[int]) -> list[Row]:
    """One row per size: items/s against the tiny encoder's own, and the embedder's peak memory."""
    model = await asyncio.to_thread(build, bench.folder / "tiny-encoder")
    store = await asyncio.to_thread(_store_heaps, sizes)
    rows, rest = [], {}
    for count in sizes:
        # The model in a process of its own (EMBEDDING_PROCESS), as for any fast encoder: in the embedder's own
        # process it waits on the GIL through every store write.
        settings = bench.settings(batch_sync_services=[SERVICE], embedding_model=str(model), embedding_process="on")
        texts = bench.texts("short", 5000)
        # This machine's speed drifts by a fifth from one minute to the next, so the encoder is timed before and
        # after the sync, three times each, and its fastest is the rate to keep up with.
        before = await asyncio.to_thread(raw_encode_rate, settings, texts, 1, ENCODES)
        seconds, [peaks] = await timed_sync(settings, bench.folder / uuid.uuid4().hex[:8], count, 1, threads=1)
        after = await asyncio.to_thread(raw_encode_rate, settings, texts, 1, ENCODES)
        library = await asyncio.to_thread(raw_encode_rate, settings, texts, 1, ENCODES, True)
        raw = max(before, after)
        rest[count] = peaks["RssAnon"] - store[count]
        rate = count / seconds
        rows.append(
            Row(
                "scale: tiny encoder, one embedder process (its model in a child process, 1 thread)",
                "short",
                count,
                seconds,
                rate,
                f"{rate / raw:.2f} of the encoder's own {raw:.0f}/s (fastest of {ENCODES} encodes before the sync: "
                f"{before:.0f}/s, after: {after:.0f}/s); {rate / library:.2f} of sentence-transformers' own encode "
                f"of it ({library:.0f}/s); peak RSS {peaks['VmHWM']:.0f} MB: heap "
                f"{peaks['RssAnon']:.0f} MB (the store's points {store[count]:.0f} MB, the rest {rest[count]:.0f} MB), "
                f"mapped files {peaks['RssFile']:.0f} MB; its child processes (the model's) {peaks['children']:.0f} MB",
                f">= {GOAL} of the encoder, heap besides the store flat",
                rate / raw >= GOAL and rest[count] <= 1.15 * min(rest.values()),
            )
        )
    return rows


def _store_heaps(sizes: list[int]) -> dict[int, float]:
    """MB of heap that a store alone adds holding each number of points."""
    done = subprocess.run(
        [sys.executable, "-c", STORE_ALONE, json.dumps(sizes)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"the store-alone measurement failed: {done.stderr[-2000:]}")
    return {int(size): mb for size, mb in json.loads(done.stdout.strip().splitlines()[-1]).items()}
