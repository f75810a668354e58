"""Embedder processes, as a deployment scales them: throughput with one and two consumers (one torch thread
each), and an embedder's peak memory during syncs of different sizes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import multiprocessing
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

from benchmarks.sampling import MemoryPeaks
from ragsync.app import options
from ragsync.app.application import App
from ragsync.app.processes import Components, wait_for_status
from ragsync.demo.coordinator_server import CoordinatorServer, DemoCoordinator
from ragsync.demo.records import Generator
from ragsync.messaging.local_broker import free_port
from ragsync.messaging.sync_requests import publish_requests, sync_requests
from ragsync.model.encoder import model_path
from ragsync.runstate.ledger import RunLedger
from ragsync.runstate.runs import RunState
from ragsync.settings import Settings

SERVICE = "payment-service"
WARM_UP_SERVICE, WARM_UP_ITEMS = "analytics-service", 64  # a small sync before the clock starts


async def timed_sync(
    settings: Settings,
    folder: Path,
    count: int,
    consumers: int,
    threads: int,
    *,
    service: str = SERVICE,
    generators: Mapping[str, Generator] | None = None,
    module: str = "ragsync",
    env: Mapping[str, str] | None = None,
    watch: Callable[[list[int]], contextlib.AbstractContextManager[object]] | None = None,
    drain: bool = False,
) -> tuple[float, list[dict[str, float]]]:
    """Sync `count` items of `service` (a demo service, or one of `generators`) through `consumers` embedder
    processes (`threads` each, 0: all cores; `python -m <module> embedder`, with `env` added); the seconds it took
    and each process's memory peaks (see `MemoryPeaks`). `watch`: entered around the timed sync with the
    embedders' process ids."""
    app = App(settings)
    await app.ensure_topics()
    folder.mkdir(parents=True)
    components = Components(settings, folder)
    ports = [free_port() for _ in range(consumers)]
    processes = [
        components.start(
            "embedder",
            module,
            OPS_PORT=str(port),
            QDRANT_PATH=str(folder / f"qdrant-{index}"),  # an embedded store has one owner
            TORCH_THREADS=str(threads) if threads else None,
            **(env or {}),
        )
        for index, port in enumerate(ports)
    ]
    stop = asyncio.Event()
    try:
        for port in ports:  # every member has its share of the partitions, and its model loaded
            await wait_for_status(port, lambda s: s["consumers"][0]["partitions"], timeout=180)
        servicer = DemoCoordinator(count, generators=generators)
        servicer.remove(WARM_UP_SERVICE, list(range(WARM_UP_ITEMS, count)))
        async with (
            CoordinatorServer(servicer) as coordinator,
            app.ledger() as ledger,
            contextlib.AsyncExitStack() as watching,
        ):
            peaks = [watching.enter_context(MemoryPeaks(p.pid)) for p in processes]
            fetcher = asyncio.create_task(app.run_fetcher(stop, coordinator.endpoint))
            # Outside the clock: the fetcher's start (its group join takes seconds) and each embedder's first batch.
            await pruned(ledger, await synced(app, ledger, WARM_UP_SERVICE, [fetcher]), [fetcher])
            with watch([p.pid for p in processes]) if watch else contextlib.nullcontext():
                if drain:
                    run, seconds = await drained(app, ledger, service, [fetcher], processes)
                else:
                    started = time.perf_counter()
                    run = await synced(app, ledger, service, [fetcher])
                    seconds = time.perf_counter() - started
            assert run.items_upserted == count, (run.items_upserted, count)
            stop.set()
            await fetcher
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            with contextlib.suppress(subprocess.TimeoutExpired):  # still building its index: killed below
                process.wait(timeout=60)
        components.stop_all()
    return seconds, [p.peaks for p in peaks]


def raw_encode_rate(
    settings: Settings, texts: list[str], processes: int, repeats: int = 1, library: bool = False
) -> float:
    """Items/s of `processes` raw encoders, one model thread each, encoding `texts` each at the same time (each
    process's fastest of `repeats` encodes): the most that many consumers could reach on this machine.
    `library`: sentence-transformers' own `encode` of the same model, rather than ragsync's encoder."""
    context = multiprocessing.get_context("spawn")  # a fresh interpreter each, as a consumer process has
    barrier, results = context.Barrier(processes), context.Queue()
    arguments = (settings, texts, barrier, results, repeats, library)
    workers = [context.Process(target=_timed_encode, args=arguments) for _ in range(processes)]
    for worker in workers:
        worker.start()
    seconds: list[float] = [results.get(timeout=600) for _ in workers]
    for worker in workers:
        worker.join()
    return processes * len(texts) / max(seconds)


def _timed_encode(
    settings: Settings, texts: list[str], barrier: Barrier, results: Queue[float], repeats: int, library: bool
) -> None:
    one_thread = settings.model_copy(update={"torch_threads": 1, "embedding_process": "off"})  # the model itself
    encode = _library_encode(one_thread) if library else App(one_thread).encoder().encode
    encode(texts[:32])  # warm up
    barrier.wait()
    fastest = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        encode(texts)
        fastest = min(fastest, time.perf_counter() - started)
    results.put(fastest)


def _library_encode(settings: Settings) -> Callable[[list[str]], object]:
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(settings.torch_threads or 1)
    model = SentenceTransformer(model_path(settings.embedding_model), device="cpu")
    return functools.partial(model.encode, batch_size=settings.embedding_batch_size, show_progress_bar=False)


async def synced(
    app: App,
    ledger: RunLedger,
    service: str,
    guard: list[asyncio.Task[None]],
    sync_type: str = "batch",
    tenant_id: str | None = None,
) -> RunState:
    """Request a sync of `service` and wait until its run succeeded (an AssertionError if it failed)."""
    defaults = options.request_defaults(app.settings)
    requests = sync_requests(defaults, [service], "cli", sync_type, tenant_id=tenant_id)  # type: ignore[arg-type]
    async with app.publisher() as publisher:
        await publish_requests(publisher, app.topics, requests)
    [run] = await ledger.wait([requests[0].run_id], 3600, guard=guard)
    assert run.status == "succeeded", run.error
    return run


async def drained(
    app: App, ledger: RunLedger, service: str, guard: list[asyncio.Task[None]], embedders: list[subprocess.Popen[bytes]]
) -> tuple[RunState, float]:
    """Sync `service` with the embedders stopped (SIGSTOP) until every item is fetched, then time them draining
    the topic: the embedders' own throughput, without the fetcher and the Coordinator on the same cores. The run,
    and the seconds from the embedders' resuming to its success."""
    defaults = options.request_defaults(app.settings)
    requests = sync_requests(defaults, [service], "cli", "batch")
    for embedder in embedders:
        embedder.send_signal(signal.SIGSTOP)
    try:
        async with app.publisher() as publisher:
            await publish_requests(publisher, app.topics, requests)
        await until_run(ledger, requests[0].run_id, lambda run: run.fetch_done, guard)
    finally:
        for embedder in embedders:
            embedder.send_signal(signal.SIGCONT)
    started = time.perf_counter()
    [run] = await ledger.wait([requests[0].run_id], 3600, guard=guard)
    assert run.status == "succeeded", run.error
    return run, time.perf_counter() - started


async def until_run(
    ledger: RunLedger, run_id: str, reached: Callable[[RunState], bool], guard: list[asyncio.Task[None]]
) -> None:
    """Wait until the ledger's state of `run_id` is `reached`; a RuntimeError if a guarded stage stops first."""
    async with asyncio.timeout(600):
        while (run := ledger.book.get(run_id)) is None or not reached(run):
            if any(task.done() for task in guard):
                raise RuntimeError(f"a stage stopped while waiting on run {run_id}")
            await asyncio.sleep(0.01)


async def pruned(ledger: RunLedger, run: RunState, guard: list[asyncio.Task[None]]) -> float:
    """Wait until an embedder has pruned the succeeded full `run` and built its store's index, which it does
    after the run; the seconds it took. A benchmark waits for it so the build's CPU and the store it holds do
    not fall into the next timed figure."""
    started = time.perf_counter()
    await until_run(ledger, run.run_id, lambda latest: latest.pruned is not None, guard)
    return time.perf_counter() - started
