"""The control plane at scale: what a run's state costs on the run-state topic, and what reading it costs.

Histories are synthetic: the records the stages write for a run (the trigger's request, the fetcher's record after
every page, the embedder's record per batch and items partition, the end, the cursor and the sweep), made with the
same event classes and keys, at a page of 1,000 and batches of 256 over 6 items partitions (the default batch is
1024, which writes a quarter of the embedder's records: these are upper bounds). Start-up is timed in a fresh
process: a component's (its run ledger read to the end) and `ragsync status --json`'s.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from benchmarks.report import Row
from ragsync.app.application import App
from ragsync.events import (
    Cursor,
    EmbedProgress,
    Event,
    FetchProgress,
    PartitionCounts,
    RunEnded,
    RunMark,
    RunPruned,
    RunQueued,
    SyncRequest,
)
from ragsync.settings import Settings

PAGE, BATCH, PARTITIONS = 1000, 256, 6


def run_records(index: int, items: int, service: str, at: datetime) -> Iterator[tuple[str, Event]]:
    """The keyed records the stages write for one full run of `items` items, in the order they write them."""
    run = {"run_id": f"history-{index:06d}", "tenant_id": "default-tenant", "service": service}
    request = SyncRequest(**run, sync_type="batch", requested_at=at)
    yield from _keyed(RunQueued(**run, request=request, at=at))
    fetch = FetchProgress(**run, request=request, status="fetching", started_at=at, at=at)
    yield from _keyed(fetch)
    embed = EmbedProgress(**run, member="member-1", at=at)
    offset = index * items // PARTITIONS
    for start in range(0, items, PAGE):
        page = min(PAGE, items - start)
        offset += page // PARTITIONS
        fetch = fetch.model_copy(
            update={
                "pages": fetch.pages + 1,
                "produced": fetch.produced + page,
                "marks": dict.fromkeys(range(PARTITIONS), offset),
            }
        )
        yield from _keyed(fetch)
        for _ in range(0, page, BATCH):  # a batch holds items of every partition: one record per batch and run
            counts = {
                p: PartitionCounts(
                    next_offset=c.next_offset + BATCH // PARTITIONS, upserted=c.upserted + BATCH // PARTITIONS
                )
                for p, c in (
                    embed.partitions or dict.fromkeys(range(PARTITIONS), PartitionCounts(next_offset=0))
                ).items()
            }
            embed = embed.model_copy(update={"partitions": counts})
            yield from _keyed(embed)
    done = at + timedelta(minutes=10)
    yield from _keyed(fetch.model_copy(update={"status": "fetched", "at": done}))
    yield from _keyed(RunEnded(**run, at=done))
    mark = RunMark(run_id=run["run_id"], sync_type="batch", started_at=at, finished_at=done)
    yield from _keyed(Cursor(tenant_id=run["tenant_id"], service=service, last_success=mark, last_full=mark))
    yield from _keyed(RunPruned(**run, pruned=0, at=done))


def _keyed(
    record: FetchProgress | EmbedProgress | RunQueued | RunEnded | RunPruned | Cursor,
) -> Iterator[tuple[str, Event]]:
    yield record.key, record


@dataclass(frozen=True)
class History:
    """What was written for a history."""

    runs: int
    items: int
    records: int
    bytes: int


async def write_history(app: App, runs: int, items_per_run: int, services: int = 4) -> History:
    """Publish `runs` full runs of `items_per_run` items each, spread over `services` services, a day apart."""
    await app.ensure_topics()
    start = datetime.now(UTC) - timedelta(days=runs)
    records = size = 0
    async with app.publisher() as publisher:
        for index in range(runs):
            service = f"service-{index % services}"
            for key, record in run_records(index, items_per_run, service, start + timedelta(days=index)):
                value = record.to_bytes()
                await publisher.send_raw(app.topics.sync_runs, key.encode(), value)
                records, size = records + 1, size + len(key) + len(value)
            await publisher.flush()
    return History(runs, runs * items_per_run, records, size)


# Each script below reports its peak RSS as VmHWM: ru_maxrss would carry the forking benchmark process's own
# peak over into the child.
STARTUP = """
import asyncio, os, sys, time
from benchmarks.sampling import memory_mb
started = time.perf_counter()
from benchmarks.report import Row
from ragsync.app.application import App
from ragsync.settings import Settings
async def main():
    async with App(Settings(_env_file=None)).ledger() as ledger:
        await ledger.caught_up(timeout=600)
        return len(ledger.book.runs)
runs = asyncio.run(main())
print(runs, time.perf_counter() - started, memory_mb(os.getpid())["VmHWM"])
"""


@dataclass(frozen=True)
class Startup:
    """A fresh process reading the run state to its end."""

    seconds: float
    peak_rss_mb: float
    runs: int


def component_startup(settings: Settings) -> Startup:
    """A component's start-up: a fresh interpreter importing the app and reading its run ledger to the end."""
    out = subprocess.run(
        [sys.executable, "-c", STARTUP], env=_env(settings), capture_output=True, text=True, check=True, timeout=900
    ).stdout.split()
    return Startup(float(out[1]), float(out[2]), int(out[0]))


# `ragsync status` itself, reporting its peak RSS on stderr as it exits.
STATUS = """
import atexit, os, runpy, sys
from benchmarks.sampling import memory_mb
peak = lambda: memory_mb(os.getpid())["VmHWM"]
atexit.register(lambda: print("peak_rss_mb", peak(), file=sys.stderr))
sys.argv = ["ragsync", "status", "--json", "--limit", "1000"]
runpy.run_module("ragsync", run_name="__main__")
"""


def status_startup(settings: Settings) -> Startup:
    """`ragsync status --json` as a person runs it: wall clock and peak RSS of the whole command."""
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", STATUS], env=_env(settings), capture_output=True, text=True, check=True, timeout=900
    )
    seconds = time.perf_counter() - started
    [peak] = [line.split()[1] for line in result.stderr.splitlines() if line.startswith("peak_rss_mb")]
    return Startup(seconds, float(peak), len(json.loads(result.stdout)))


def _env(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "KAFKA_TOPIC_PREFIX": settings.kafka_topic_prefix,
        "KAFKA_PARTITIONS": str(settings.kafka_partitions),
    }


# The histories of the table: (runs, items per run).
HISTORIES = ((10, 1_000), (100, 10_000), (100, 100_000))
BEFORE_BYTES_PER_1000 = 31_000  # item-id lists on every progress event, measured on the release before


async def control_rows(bootstrap_servers: str, histories: tuple[tuple[int, int], ...] = HISTORIES) -> list[Row]:
    """Bytes on the run-state topic per 1,000 items, and start-up of a component and of `ragsync status` after
    each history, against the smallest history's peak RSS."""
    rows: list[Row] = []
    smallest: dict[str, Startup] = {}
    for runs, items in histories:
        prefix = f"history-{runs}x{items}."
        settings = Settings(kafka_bootstrap_servers=bootstrap_servers, kafka_topic_prefix=prefix, _env_file=None)
        history = await write_history(App(settings), runs, items)
        label = f"{history.items:,} items, {runs} runs"
        per_1000 = history.bytes / history.items * 1000
        before = BEFORE_BYTES_PER_1000 / 1000
        versus = f"{per_1000 / 1000:.1f} KB per 1,000 items ({history.records:,} records); before {before:.0f} KB"
        rows.append(Row("control plane: run-state topic", label, history.items, 0.0, 0.0, versus))
        for name, measure in (("component", component_startup), ("ragsync status", status_startup)):
            startup = measure(settings)
            base = smallest.setdefault(name, startup)
            growth = startup.peak_rss_mb / base.peak_rss_mb - 1
            rows.append(
                Row(
                    f"start-up: {name}",
                    label,
                    history.items,
                    startup.seconds,
                    0.0,
                    f"peak RSS {startup.peak_rss_mb:.0f} MB ({growth:+.0%} vs the smallest history)",
                    "< 2 s, RSS within 15 %",
                    startup.seconds < 2 and growth <= 0.15,
                )
            )
    return rows


SWEEP = """
import os, sys, time
from benchmarks.sampling import memory_mb
from ragsync.store import Point, point_id
from ragsync.store.edge_store import EdgeStore
folder, points = sys.argv[1], int(sys.argv[2])
store = EdgeStore.open(__import__("pathlib").Path(folder), "bench")
store.ensure_collection(8, "sweep")
for start in range(0, points, 1000):
    batch = []
    for i in range(start, min(start + 1000, points)):
        stale = i % 2 == 0  # half of the points the full run did not see
        payload = {"tenant_id": "t", "service": "s", "item_id": str(i), "generation": "old" if stale else "new",
                   "touched_at": 1.0 if stale else 3.0}
        batch.append(Point(point_id("t", "s", str(i)), [float(i % 7), 1.0, 0, 0, 0, 0, 0, 1.0], payload))
    store.upsert(batch)
store.optimize()
peak = lambda: memory_mb(os.getpid())["VmHWM"]
before = peak()  # filling and indexing the store
open("/proc/self/clear_refs", "w").write("5")  # resets VmHWM to the current RSS: the sweep's own peak follows
start = peak()
started = time.perf_counter()
removed = store.sweep("t", "s", "new", 2.0)
seconds = time.perf_counter() - started
print(removed, seconds, before, start, peak())
store.close()
"""


def sweep_row(folder: str, points: int) -> Row:
    """The sweep after a full run over `points` points in the embedded store, half of them stale."""
    out = subprocess.run(
        [sys.executable, "-c", SWEEP, folder, str(points)], capture_output=True, text=True, check=True, timeout=3600
    ).stdout.split()
    removed, seconds = int(out[0]), float(out[1])
    filled, start, after = (float(value) for value in out[2:5])
    return Row(
        "sweep after a full run (qdrant-edge)",
        f"{points:,} points, half stale",
        removed,
        seconds,
        removed / seconds,
        f"RSS {start:.0f} MB as it starts, peak {after:.0f} MB while sweeping (filling the store: {filled:.0f} MB)",
    )
