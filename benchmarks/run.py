"""ragsync's benchmark: every figure against the raw embedding model, on this machine, in the same run.

    make bench            # or: .venv/bin/python benchmarks/run.py [--short N] [--long N] [--store-points N]

Prints one table and writes benchmarks/results/latest.json and latest.png. Short records are the demo's
payment-service (~40 words of text), long ones the knowledge-service articles (~200 words).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import resource
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from producers.trigger import publish_requests, sync_requests
from ragsync.app import App
from ragsync.broker import LocalBroker
from ragsync.coordinator.paging import PageQuery, iterate_pages
from ragsync.coordinator.request import CallerIdentity
from ragsync.demo.coordinator import CoordinatorServer, DemoCoordinator
from ragsync.demo.records import demo_record
from ragsync.ledger import RunLedger
from ragsync.runs import RunState
from ragsync.settings import Settings
from ragsync.store import Point, VectorStore, point_id
from streams.items import ItemRules
from streams.model import TextEncoder
from streams.schemas import Schemas

RESULTS = Path(__file__).resolve().parent / "results"
CORPORA = {"short": "payment-service", "long": "knowledge-service"}


@dataclass
class Row:
    """One line of the table."""

    benchmark: str
    corpus: str
    items: int
    seconds: float
    rate: float
    versus: str = ""
    goal: str = ""
    met: bool | None = None


class Bench:
    """Runs the benchmarks against one local broker and one model."""

    def __init__(self, broker: LocalBroker, encoder: TextEncoder, folder: Path) -> None:
        self.broker = broker
        self.encoder = encoder
        self.folder = folder
        self.rules = ItemRules(Schemas.load(None))
        self.rows: list[Row] = []

    def settings(self, **changes: Any) -> Settings:
        name = uuid.uuid4().hex[:8]
        return Settings(
            kafka_bootstrap_servers=self.broker.bootstrap_servers,
            kafka_topic_prefix=f"bench{name}.",
            kafka_partitions=4,
            kafka_session_timeout_ms=6000,
            data_dir=self.folder / name,
            qdrant_path=self.folder / name / "qdrant",
            batch_sync_limit=500,
            _env_file=None,
            **changes,
        )

    def texts(self, corpus: str, count: int) -> list[str]:
        service = CORPORA[corpus]
        return [self.rules.text(demo_record(service, i), service) for i in range(count)]

    # --- 1. the ceiling -------------------------------------------------------------------------------------
    def ceiling(self, corpus: str, count: int) -> float:
        texts = self.texts(corpus, count)
        self.encoder.encode(texts[:32])  # warm up
        seconds = min(self._timed(lambda: self.encoder.encode(texts)) for _ in range(3))  # best of three
        self.rows.append(Row("ceiling: raw model encode", corpus, count, seconds, count / seconds))
        return count / seconds

    @staticmethod
    def _timed(work: Callable[[], Any]) -> float:
        started = time.perf_counter()
        work()
        return time.perf_counter() - started

    # --- 2-5, 7: the pipeline ------------------------------------------------------------------------------
    async def pipeline(self, corpus: str, count: int, ceiling: float) -> None:
        service = CORPORA[corpus]
        settings = self.settings(batch_sync_services=[service])
        app = App(settings)
        await app.ensure_topics()
        store = VectorStore.open(settings)
        servicer = DemoCoordinator(count)
        stop = asyncio.Event()
        stages: list[asyncio.Task[None]] = []
        try:
            async with CoordinatorServer(servicer) as coordinator, app.ledger() as ledger:
                tasks = [
                    asyncio.create_task(app.run_fetcher(stop, coordinator.endpoint)),
                    asyncio.create_task(app.run_embedders(stop, 1, store, self.encoder)),
                ]
                stages.extend(tasks)
                await self._sync(app, ledger, "analytics-service", tasks)  # warm-up: groups joined, model hot
                first, first_s = await self._timed_sync(app, ledger, service, tasks)
                self.rows.append(
                    Row(
                        "first sync: Coordinator to Qdrant",
                        corpus,
                        first.items_upserted,
                        first_s,
                        first.items_upserted / first_s,
                        f"{first.items_upserted / first_s / ceiling:.2f} of ceiling",
                        ">= 0.9 of ceiling",
                        first.items_upserted / first_s / ceiling >= 0.9,
                    )
                )
                again, again_s = await self._timed_sync(app, ledger, service, tasks)
                speedup = first_s / again_s
                self.rows.append(
                    Row(
                        "unchanged re-sync",
                        corpus,
                        again.items_skipped,
                        again_s,
                        count / again_s,
                        f"{speedup:.1f}x faster",
                        ">= 20x",
                        speedup >= 20,
                    )
                )
                if corpus == "short":
                    await self._latency(app, ledger, servicer, store, service, tasks)
        finally:
            stop.set()
            await asyncio.gather(*stages, return_exceptions=True)
            store.close()

    async def _sync(
        self, app: App, ledger: RunLedger, service: str, tasks: list[asyncio.Task[None]], sync_type: str = "batch"
    ) -> RunState:
        requests = sync_requests(app.settings, [service], "cli", sync_type)  # type: ignore[arg-type]
        async with app.publisher() as publisher:
            await publish_requests(publisher, app.topics, requests)
        [run] = await ledger.wait([requests[0].run_id], 1800, guard=tasks)
        assert run.status == "succeeded", run.error
        return run

    async def _timed_sync(
        self, app: App, ledger: RunLedger, service: str, tasks: list[asyncio.Task[None]]
    ) -> tuple[RunState, float]:
        started = time.perf_counter()
        run = await self._sync(app, ledger, service, tasks)
        return run, time.perf_counter() - started

    async def _latency(
        self,
        app: App,
        ledger: RunLedger,
        servicer: DemoCoordinator,
        store: VectorStore,
        service: str,
        tasks: list[asyncio.Task[None]],
    ) -> None:
        """Change a few records upstream, trigger an incremental sync, time until search finds the new text."""
        latencies = []
        for round_ in range(1, 8):
            indices = [round_, round_ + 100, round_ + 200]
            servicer.change(service, indices)
            changed = demo_record(service, indices[0], servicer.revision(service, indices[0]))
            vector = self.encoder.encode([self.rules.text(changed, service)])[0]
            started = time.perf_counter()
            requests = sync_requests(app.settings, [service], "cli", "incremental")
            async with app.publisher() as publisher:
                await publish_requests(publisher, app.topics, requests)
            while True:
                hits = await asyncio.to_thread(store.search, vector, 1, None, service)
                if hits and hits[0].payload.get("item_id") == changed["id"] and "(revision" in str(hits[0].payload):
                    break
                if any(t.done() for t in tasks):
                    raise RuntimeError("a stage stopped during the latency benchmark")
                await asyncio.sleep(0.02)
            latencies.append(time.perf_counter() - started)
            await ledger.wait([requests[0].run_id], 60, guard=tasks)
        p50 = statistics.median(latencies)
        p95 = sorted(latencies)[max(0, round(0.95 * len(latencies)) - 1)]
        self.rows.append(
            Row(
                "change to searchable (p50 / p95)",
                "short",
                3,
                p95,
                0.0,
                f"p50 {p50:.2f}s, p95 {p95:.2f}s",
                "p95 < 10 s",
                p95 < 10,
            )
        )

    # --- 4. the fetch stage alone ---------------------------------------------------------------------------
    async def fetch_stage(self, corpus: str, count: int, ceiling: float) -> None:
        service = CORPORA[corpus]
        app = App(self.settings())
        await app.ensure_topics()
        stop = asyncio.Event()
        async with CoordinatorServer(DemoCoordinator(count)) as coordinator, app.ledger() as ledger:
            fetcher = asyncio.create_task(app.run_fetcher(stop, coordinator.endpoint))
            await self._until_fetched(app, ledger, "analytics-service", [fetcher])  # warm-up
            started = time.perf_counter()
            await self._until_fetched(app, ledger, service, [fetcher])
            seconds = time.perf_counter() - started
            stop.set()
            await fetcher
        rate = count / seconds
        self.rows.append(
            Row(
                "fetch stage alone: Coordinator to items topic",
                corpus,
                count,
                seconds,
                rate,
                f"{rate / ceiling:.1f}x ceiling",
                ">= 10x ceiling",
                rate / ceiling >= 10,
            )
        )

    async def _until_fetched(self, app: App, ledger: RunLedger, service: str, tasks: list[asyncio.Task[None]]) -> None:
        requests = sync_requests(app.settings, [service], "cli")
        async with app.publisher() as publisher:
            await publish_requests(publisher, app.topics, requests)
        while not ((run := ledger.book.get(requests[0].run_id)) and (run.fetch_done or run.finished)):
            if any(t.done() for t in tasks):
                raise RuntimeError("the fetcher stopped")
            await asyncio.sleep(0.01)

    # --- 5. scaling -----------------------------------------------------------------------------------------
    async def scaling(self, count: int) -> None:
        import torch

        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        rates = {}
        try:
            for consumers in (1, 2):
                settings = self.settings(batch_sync_services=["payment-service"])
                app = App(settings)
                await app.ensure_topics()
                store = VectorStore.open(settings)
                stop = asyncio.Event()
                try:
                    async with CoordinatorServer(DemoCoordinator(count)) as coordinator, app.ledger() as ledger:
                        tasks = [
                            asyncio.create_task(app.run_fetcher(stop, coordinator.endpoint)),
                            asyncio.create_task(app.run_embedders(stop, consumers, store, self.encoder)),
                        ]
                        await self._sync(app, ledger, "analytics-service", tasks)
                        run, seconds = await self._timed_sync(app, ledger, "payment-service", tasks)
                        rates[consumers] = run.items_upserted / seconds
                        stop.set()
                        await asyncio.gather(*tasks)
                finally:
                    store.close()
        finally:
            torch.set_num_threads(previous)
        ratio = rates[2] / rates[1]
        self.rows.append(
            Row(
                "scaling: 2 consumers vs 1 (1 torch thread each)",
                "short",
                count,
                0.0,
                rates[2],
                f"{ratio:.2f}x ({rates[1]:.0f} -> {rates[2]:.0f}/s)",
                ">= 1.7x",
                ratio >= 1.7,
            )
        )

    # --- 8. the naive baseline ------------------------------------------------------------------------------
    async def naive(self, count: int) -> None:
        """Per item: fetch a page of one, embed it alone, store it alone (what the replaced system did)."""
        service = "payment-service"
        store = VectorStore.on_disk(self.folder / "naive", "naive")
        store.ensure_collection(self.encoder.dimension, self.encoder.name)
        app = App(self.settings())
        try:
            async with (
                CoordinatorServer(DemoCoordinator(count)) as coordinator,
                app.coordinator_client(coordinator.endpoint) as client,
            ):
                started = time.perf_counter()
                query = PageQuery(service, limit=1)
                async for page in iterate_pages(client, CallerIdentity(), query, 30.0, count + 1):
                    for record in page.records:
                        text = self.rules.text(record, service)
                        vector = self.encoder.encode([text])[0]
                        store.upsert([Point(point_id("t", service, record["id"]), vector, {"text": text})])
                seconds = time.perf_counter() - started
        finally:
            store.close()
        self.rows.append(Row("naive baseline: per-item fetch, embed, store", "short", count, seconds, count / seconds))

    # --- 9. the embedded store ------------------------------------------------------------------------------
    def store(self, points: int) -> None:
        rng = random.Random(1)
        folder = self.folder / "store"
        store = VectorStore.on_disk(folder, "bench")
        store.ensure_collection(384, "random")
        started = time.perf_counter()
        for start in range(0, points, 64):
            batch = [
                Point(
                    point_id("t", "s", str(i)),
                    [rng.uniform(-1, 1) for _ in range(384)],
                    {"tenant_id": "t", "service": "s", "item_id": str(i)},
                )
                for i in range(start, min(points, start + 64))
            ]
            store.upsert(batch)
        upsert_s = time.perf_counter() - started
        query = [rng.uniform(-1, 1) for _ in range(384)]
        timings = []
        for _ in range(10):
            t0 = time.perf_counter()
            store.search(query, 10, tenant_id="t")
            timings.append(time.perf_counter() - t0)
        store.close()
        t0 = time.perf_counter()
        reopened = VectorStore.on_disk(folder, "bench")
        reopened.count()
        reopen_s = time.perf_counter() - t0
        reopened.close()
        self.rows.append(
            Row("embedded store (qdrant-client local): upsert", "random 384-d", points, upsert_s, points / upsert_s)
        )
        self.rows.append(
            Row(
                "embedded store: search latency (median)",
                "random 384-d",
                points,
                statistics.median(timings),
                0.0,
                f"{statistics.median(timings) * 1000:.0f} ms",
            )
        )
        self.rows.append(Row("embedded store: reopen", "random 384-d", points, reopen_s, 0.0, f"{reopen_s:.1f} s"))


def peak_rss_mb() -> float:
    """This process's peak resident memory (fetcher, embedder and ledger run in it)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def print_table(rows: list[Row], console: Console) -> None:
    table = Table(
        title=f"ragsync benchmark on {platform.node()} ({platform.processor() or platform.machine()}, "
        f"{__import__('os').cpu_count()} cores)"
    )
    for column in ("benchmark", "corpus", "items", "seconds", "items/s", "compared", "goal", "met"):
        table.add_column(column, justify="right" if column in ("items", "seconds", "items/s") else "left")
    for row in rows:
        met = "" if row.met is None else ("[green]yes[/green]" if row.met else "[red]no[/red]")
        table.add_row(
            row.benchmark,
            row.corpus,
            str(row.items),
            f"{row.seconds:.2f}",
            f"{row.rate:.1f}" if row.rate else "",
            row.versus,
            row.goal,
            met,
        )
    console.print(table)


def chart(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rated = [r for r in rows if r.rate and not r.benchmark.startswith("embedded store")]
    figure, axis = plt.subplots(figsize=(10, 5))
    axis.barh([f"{r.benchmark} ({r.corpus})" for r in rated], [r.rate for r in rated], color="#4477aa")
    axis.set_xlabel("items per second")
    axis.set_xscale("log")
    axis.set_title("ragsync throughput vs the raw model (same machine, same run)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


async def main(args: argparse.Namespace) -> None:
    console = Console()
    with tempfile.TemporaryDirectory() as folder, LocalBroker() as broker:
        encoder = TextEncoder()
        bench = Bench(broker, encoder, Path(folder))
        steps: list[tuple[str, Callable[[], Awaitable[None]] | Callable[[], Any]]] = []
        ceilings = {corpus: bench.ceiling(corpus, n) for corpus, n in (("short", args.short), ("long", args.long))}
        steps = [
            ("pipeline, short", lambda: bench.pipeline("short", args.short, ceilings["short"])),
            ("pipeline, long", lambda: bench.pipeline("long", args.long, ceilings["long"])),
            ("fetch stage", lambda: bench.fetch_stage("short", args.fetch, ceilings["short"])),
            ("scaling", lambda: bench.scaling(args.short)),
            ("naive baseline", lambda: bench.naive(args.naive)),
        ]
        for name, step in steps:
            console.log(f"running: {name}")
            await step()
        bench.store(args.store_points)
        bench.rows.append(
            Row(
                "peak RSS of the pipeline process",
                "",
                0,
                0.0,
                0.0,
                f"{peak_rss_mb():.0f} MB",
                "< 1536 MB",
                peak_rss_mb() < 1536,
            )
        )
    print_table(bench.rows, console)
    RESULTS.mkdir(exist_ok=True)
    report = {
        "machine": {
            "node": platform.node(),
            "cores": __import__("os").cpu_count(),
            "python": platform.python_version(),
        },
        "arguments": vars(args),
        "rows": [asdict(r) for r in bench.rows],
    }
    (RESULTS / "latest.json").write_text(json.dumps(report, indent=2) + "\n")
    chart(bench.rows, RESULTS / "latest.png")
    console.print(f"wrote {RESULTS / 'latest.json'} and {RESULTS / 'latest.png'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", type=int, default=1000, help="short records per run")
    parser.add_argument("--long", type=int, default=300, help="long records per run")
    parser.add_argument("--fetch", type=int, default=5000, help="records for the fetch-stage run")
    parser.add_argument("--naive", type=int, default=150, help="records for the naive baseline")
    parser.add_argument("--store-points", type=int, default=20000, help="points for the embedded-store run")
    asyncio.run(main(parser.parse_args()))
