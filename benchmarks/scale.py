"""The pipeline against a fast encoder: the tiny random encoder of `benchmarks.tiny_encoder` (built here, from the
packaged model's tokenizer) through the real stages (broker, fetcher, one embedder process, embedded store), at
sizes large enough that only per-item costs count. Compared with that encoder's own items/s in a process of its own,
with one model thread on both sides; the embedder's peak memory shows whether anything grows with the records.
"""

from __future__ import annotations

import asyncio
import uuid

from benchmarks.consumers import SERVICE, raw_encode_rate, timed_sync
from benchmarks.pipeline import Bench
from benchmarks.report import Row
from benchmarks.tiny_encoder import build

GOAL = 0.5  # of the encoder's own items/s: the pipeline must not be what a fast encoder waits on


async def scale_rows(bench: Bench, sizes: list[int]) -> list[Row]:
    """One row per size: items/s against the tiny encoder's own, and the embedder's peak memory."""
    model = await asyncio.to_thread(build, bench.folder / "tiny-encoder")
    rows, heaps = [], {}
    for count in sizes:
        settings = bench.settings(batch_sync_services=[SERVICE], embedding_model=str(model))
        texts = bench.texts("short", 5000)
        raw = await asyncio.to_thread(raw_encode_rate, settings, texts, 1)
        seconds, [peaks] = await timed_sync(settings, bench.folder / uuid.uuid4().hex[:8], count, 1, threads=1)
        heaps[count] = peaks["RssAnon"]
        rate = count / seconds
        rows.append(
            Row(
                "scale: tiny encoder, one embedder process (1 thread)",
                "short",
                count,
                seconds,
                rate,
                f"{rate / raw:.2f} of the encoder's own {raw:.0f}/s; peak RSS {peaks['VmHWM']:.0f} MB "
                f"(heap {peaks['RssAnon']:.0f} MB, mapped files {peaks['RssFile']:.0f} MB)",
                f">= {GOAL} of the encoder, heap flat",
                rate / raw >= GOAL and heaps[count] <= 1.15 * min(heaps.values()),
            )
        )
    return rows
